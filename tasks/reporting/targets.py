"""Time to target: the first epoch whose validation accuracy reaches a target, and the seconds spent to get there.

Per run, from metrics.parquet: epochs are sorted, and `wall_seconds` of an epoch covers its training and
its validation. Rows survive a resume, so the cumulative sum of wall_seconds up to an epoch is the time
spent training and validating to reach it (a crashed attempt's lost partial epoch is not in it). A run
that diverged after reaching a target did reach it; a run without metrics reached nothing.

Per optimizer (its chosen grid point): the median over all its seeds, a seed that never reached the target
counting as infinitely slow. So the median is "not reached" (None) unless more than half the seeds
reached it, and a slow-but-stable optimizer is not flattered by dropping its failures.

Performance profile, in the form of AlgoPerf (Dahl et al. 2023): for each seed, the reference time is the
fastest time to the target over every optimizer's run on *that* seed (same initial weights and data
order); an optimizer's profile ρ(τ) is the fraction of its seeds whose time is within τ × that reference.
A run that did not reach the target has ratio ∞ (None in JSON), which keeps ρ below 1 for every τ.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from tasks.core.errors import ReportError

DEFAULT_TARGETS = (0.85, 0.88)
TARGETS_METADATA_KEY = b"val_accuracy_targets"


def check_targets(targets: Sequence[float]) -> tuple[float, ...]:
    """The targets as floats; ReportError unless each is a distinct number in (0, 1]."""
    try:
        values = tuple(float(target) for target in targets)
    except (TypeError, ValueError):
        raise ReportError(f"targets: expected validation accuracies in (0, 1], found {targets!r}") from None
    bad = [value for value in values if not (0 < value <= 1)]
    if not values or bad or len(set(values)) != len(values):
        raise ReportError(
            f"targets: expected one or more distinct validation accuracies in (0, 1], found {list(targets)!r}; "
            "pass e.g. targets=(0.85, 0.88)"
        )
    return values


def tag(target: float) -> str:
    """'85' for 0.85, '88p5' for 0.885: a column-name-safe percentage."""
    return f"{100 * target:.6g}".replace(".", "p")


def columns(target: float) -> tuple[str, str]:
    """summary.parquet's (epochs, seconds) column names for one target."""
    return f"epochs_to_val_{tag(target)}", f"seconds_to_val_{tag(target)}"


def time_to_targets(
    metrics: Mapping[str, np.ndarray] | None, targets: Sequence[float]
) -> list[tuple[int | None, float | None]]:
    """(first epoch with val_accuracy ≥ target, cumulative wall seconds through it) per target, or (None, None)."""
    if metrics is None or len(metrics["epoch"]) == 0:
        return [(None, None)] * len(targets)
    accuracy = np.asarray(metrics["val_accuracy"], dtype=np.float64)
    elapsed = np.cumsum(np.asarray(metrics["wall_seconds"], dtype=np.float64))
    found = []
    for target in targets:
        reached = np.flatnonzero(accuracy >= target)  # NaN never reaches
        if reached.size:
            first = int(reached[0])
            found.append((int(metrics["epoch"][first]), float(elapsed[first])))
        else:
            found.append((None, None))
    return found


def _chosen_times(rows: Iterable[Mapping[str, Any]], target: float) -> dict[str, dict[int, tuple]]:
    epochs_column, seconds_column = columns(target)
    times: dict[str, dict[int, tuple]] = {}
    for row in rows:
        if row.get("chosen"):
            times.setdefault(str(row["name"]), {})[int(row["seed"])] = (row.get(epochs_column), row.get(seconds_column))
    return {name: dict(sorted(seeds.items())) for name, seeds in times.items()}


def _median(values: list[float | None]) -> float | None:
    if not values:
        return None
    middle = float(np.median([math.inf if value is None else float(value) for value in values]))
    return middle if math.isfinite(middle) else None


def summarize(rows: Iterable[Mapping[str, Any]], targets: Sequence[float]) -> dict[str, Any]:
    """The "time_to_target" block of report.json, from summary rows alone (chosen rows only)."""
    rows = list(rows)
    optimizers: dict[str, list[dict[str, Any]]] = {}
    profiles = []
    for target in targets:
        times = _chosen_times(rows, target)
        for name, seeds in times.items():
            epochs = [epoch for epoch, _ in seeds.values()]
            optimizers.setdefault(name, []).append(
                {
                    "target": target,
                    "n_seeds": len(seeds),
                    "reached": sum(epoch is not None for epoch in epochs),
                    "median_epochs": _median(epochs),
                    "median_seconds": _median([seconds for _, seconds in seeds.values()]),
                }
            )
        profiles.append({"target": target, "ratios": _ratios(times)})
    return {
        "targets": list(targets),
        "reference": "the fastest run on the same seed, over all optimizers",
        "optimizers": optimizers,
        "profiles": profiles,
    }


def _ratios(times: Mapping[str, Mapping[int, tuple]]) -> dict[str, list[float | None]]:
    """Per optimizer, its seeds' time / the fastest time on that seed (None: not reached, or no one did)."""
    fastest: dict[int, float] = {}
    for seeds in times.values():
        for seed, (_, seconds) in seeds.items():
            if seconds is not None and seconds > 0:
                fastest[seed] = min(fastest.get(seed, math.inf), float(seconds))
    return {
        name: [
            float(seconds) / fastest[seed] if seconds is not None and seed in fastest and seconds > 0 else None
            for seed, (_, seconds) in seeds.items()
        ]
        for name, seeds in times.items()
    }


def profile_curve(ratios: Sequence[float | None], taus: np.ndarray) -> np.ndarray:
    """ρ(τ): the fraction of `ratios` that are ≤ τ (None never is)."""
    finite = np.array([ratio for ratio in ratios if ratio is not None], dtype=np.float64)
    if not ratios:
        return np.zeros_like(taus)
    return (finite[None, :] <= taus[:, None]).sum(axis=1) / len(ratios)
