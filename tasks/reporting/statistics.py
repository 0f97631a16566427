"""Does one optimizer really beat another? Paired statistics over seeds, computed from summary rows alone.

The input is the rows of summary.parquet (one per run); only rows whose `chosen` is true count: each
entry at its chosen grid point. For a given seed every optimizer starts from the same initial weights and
sees the same data order, so runs are paired by seed, and a pair (A, B) is compared on the seeds on which
both have a test accuracy.

Choices, and why:
- Intervals are 95% percentile bootstraps (scipy.stats.bootstrap, 10,000 resamples) with a numpy
  Generator seeded with BOOTSTRAP_SEED afresh for every call: the resampled seed indices depend only on
  the number of seeds, so an interval depends on its own data only (up to rounding in the last bit), not
  on which other optimizers are in the report. Not BCa: its bias correction counts the resamples whose
  statistic lies strictly below the estimate, and accuracies sit on a 1/10,000 grid, so many resample
  means tie the estimate exactly and floating-point rounding would decide the interval. A constant
  vector gets the interval [c, c]: every resample has that mean. With 3-5 seeds a percentile interval
  is too narrow (about the normal's width, not Student's t); the t-test's p-value has no such bias, and
  significance is decided by it alone.
- p-values come from the paired t-test (scipy.stats.ttest_rel, two-sided). Wilcoxon's signed-rank test
  assumes less, but its exact p-value cannot go below 2 / 2^n (0.0625 at 5 seeds, 0.002 at 10), so after
  Holm's correction over many pairs it could almost never reject at the seed counts this project runs.
  A difference of two accuracies over 10,000 test images is a sum of many small effects, close to
  normal, which is what the t-test assumes; the power calculation (tasks.reporting.power) uses the same
  test. Differences with zero spread give p = 1 when all are 0, else p = 0 (the t statistic is infinite).
- Multiple comparisons: Holm's step-down over every pair that has a p-value; `significant` means the
  Holm-adjusted p < ALPHA. The bootstrap intervals are per pair and not adjusted, so an interval can
  exclude 0 while the adjusted test does not reject; the sentence then says so.
- Fewer than MIN_SEEDS paired seeds: no interval, no p-value, no significance (None); instead the number
  of seeds a difference of the observed size would need.
- A diverged run, or a missing or non-finite test accuracy, has no test accuracy. It is left out of its
  optimizer's mean and of every pair on that seed; it is never counted as 0 (a number the model never
  produced). n_excluded counts those runs, and each pair's sentence names the optimizers that lost seeds.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from itertools import combinations
from typing import Any

import numpy as np
import scipy.stats

from tasks.reporting import power

CONFIDENCE = 0.95
N_RESAMPLES = 10_000
BOOTSTRAP_SEED = 20_180_417
ALPHA = power.ALPHA
MIN_SEEDS = power.MIN_SEEDS
CONSTANT_SPREAD = 1e-12  # accuracies are multiples of 1e-4; a smaller spread is rounding, not data
PAIR_KEYS = (
    "a",
    "b",
    "n_seeds",
    "mean_difference",
    "ci_low",
    "ci_high",
    "p_improvement",
    "p_improvement_ci_low",
    "p_improvement_ci_high",
    "p_value",
    "p_value_holm",
    "significant",
    "sd_difference",
    "seeds_needed",
    "sentence",
)
METHOD = {
    "confidence": CONFIDENCE,
    "resamples": N_RESAMPLES,
    "bootstrap_seed": BOOTSTRAP_SEED,
    "interval": "percentile bootstrap",
    "test": "paired t-test (scipy.stats.ttest_rel), two-sided",
    "correction": "Holm step-down over all tested pairs",
    "alpha": ALPHA,
    "power": power.POWER,
    "min_seeds": MIN_SEEDS,
}


def compute(rows: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """The "statistics" block of report.json from summary rows (name, seed, status, test_accuracy, chosen)."""
    accuracies, lost = chosen_accuracies(rows)
    names = list(accuracies)
    vectors = [np.array(list(accuracies[name].values()), dtype=np.float64) for name in names]
    pairs = []
    for first, second in combinations(names, 2):
        common = [seed for seed in accuracies[first] if seed in accuracies[second]]
        a = np.array([accuracies[first][seed] for seed in common], dtype=np.float64)
        b = np.array([accuracies[second][seed] for seed in common], dtype=np.float64)
        pairs.append({"a": first, "b": second, "values": (a, b), "differences": a - b})

    differences = [pair["differences"] for pair in pairs]
    wins = [np.where(d > 0, 1.0, np.where(d == 0, 0.5, 0.0)) for d in differences]
    mean_intervals = bootstrap_mean_intervals(vectors + differences)
    win_intervals = bootstrap_mean_intervals(wins)
    p_values = paired_p_values([pair["values"] for pair in pairs])
    tested = [index for index, p in enumerate(p_values) if p is not None]
    adjusted: list[float | None] = [None] * len(pairs)
    for index, value in zip(tested, holm([p_values[index] for index in tested])):
        adjusted[index] = value
    pooled_sd = power.pooled_sd(differences)

    optimizers = {}
    for name, vector, interval in zip(names, vectors, mean_intervals):
        optimizers[name] = {
            "mean": float(vector.mean()) if vector.size else None,
            "ci_low": interval[0] if interval else None,
            "ci_high": interval[1] if interval else None,
            "n_seeds": int(vector.size),
            "n_excluded": lost.get(name, 0),
        }
    out_pairs = []
    for index, pair in enumerate(pairs):
        d, interval, win_interval = pair["differences"], mean_intervals[len(names) + index], win_intervals[index]
        result = {
            "a": pair["a"],
            "b": pair["b"],
            "n_seeds": int(d.size),
            "mean_difference": float(d.mean()) if d.size else None,
            "ci_low": interval[0] if interval else None,
            "ci_high": interval[1] if interval else None,
            "p_improvement": float(wins[index].mean()) if d.size else None,
            "p_improvement_ci_low": win_interval[0] if win_interval else None,
            "p_improvement_ci_high": win_interval[1] if win_interval else None,
            "p_value": p_values[index],
            "p_value_holm": adjusted[index],
            "significant": None if adjusted[index] is None else bool(adjusted[index] < ALPHA),
            "sd_difference": float(d.std(ddof=1)) if d.size > 1 else None,
        }
        estimate = None  # only pairs short of seeds are sized
        if d.size < MIN_SEEDS:
            estimate = power.estimate(result["mean_difference"], result["sd_difference"], d.size, pooled_sd)
        result["seeds_needed"] = estimate.seeds if estimate else None
        result["sentence"] = power.sentence(result, estimate, len(tested), lost)
        out_pairs.append({key: result[key] for key in PAIR_KEYS})
    needed = [pair["seeds_needed"] for pair in out_pairs if pair["seeds_needed"] is not None]
    return {
        "optimizers": optimizers,
        "pairs": out_pairs,
        "seeds_needed": max(needed) if needed else None,
        "method": dict(METHOD),
    }


def chosen_accuracies(rows: Iterable[Mapping[str, Any]]) -> tuple[dict[str, dict[int, float]], dict[str, int]]:
    """Entry → {seed: test accuracy} (seed order) over chosen rows, and entry → runs without an accuracy.

    Entries keep the order of their first row (config order); an entry whose every run diverged is kept,
    with no seeds, so that it still appears in the tables.
    """
    accuracies: dict[str, dict[int, float]] = {}
    lost: dict[str, int] = defaultdict(int)
    for row in rows:
        if not row.get("chosen"):
            continue
        name, accuracy = str(row["name"]), row.get("test_accuracy")
        seeds = accuracies.setdefault(name, {})
        usable = row.get("status") == "completed" and accuracy is not None and math.isfinite(accuracy)
        if usable:
            seeds[int(row["seed"])] = float(accuracy)
        else:
            lost[name] += 1
    return {name: dict(sorted(seeds.items())) for name, seeds in accuracies.items()}, dict(lost)


def bootstrap_mean_intervals(vectors: Sequence[np.ndarray]) -> list[tuple[float, float] | None]:
    """The 95% bootstrap interval of each vector's mean; None below MIN_SEEDS values.

    Vectors of equal length go through one vectorised scipy.stats.bootstrap call: scipy draws one index
    array per call, shared by all rows, so batching changes no row's interval beyond the last bit.
    """
    intervals: list[tuple[float, float] | None] = [None] * len(vectors)
    by_length: dict[int, list[int]] = defaultdict(list)
    for index, vector in enumerate(vectors):
        if vector.size < MIN_SEEDS:
            continue
        if np.ptp(vector) <= CONSTANT_SPREAD:
            mean = float(vector.mean())
            intervals[index] = (mean, mean)
        else:
            by_length[vector.size].append(index)
    for indices in by_length.values():
        data = np.stack([vectors[index] for index in indices])
        result = scipy.stats.bootstrap(
            (data,),
            np.mean,
            n_resamples=N_RESAMPLES,
            confidence_level=CONFIDENCE,
            method="percentile",
            axis=-1,
            vectorized=True,
            rng=np.random.default_rng(BOOTSTRAP_SEED),
        )
        low, high = np.atleast_1d(result.confidence_interval.low), np.atleast_1d(result.confidence_interval.high)
        for row, index in enumerate(indices):
            intervals[index] = (float(low[row]), float(high[row]))
    return intervals


def paired_p_values(pairs: Sequence[tuple[np.ndarray, np.ndarray]]) -> list[float | None]:
    """Two-sided paired t-test p-value per (a, b); None below MIN_SEEDS pairs. See the module docstring."""
    p_values: list[float | None] = [None] * len(pairs)
    by_length: dict[int, list[int]] = defaultdict(list)
    for index, (a, b) in enumerate(pairs):
        if a.size < MIN_SEEDS:
            continue
        d = a - b
        if np.ptp(d) <= CONSTANT_SPREAD:
            p_values[index] = 1.0 if abs(d.mean()) <= CONSTANT_SPREAD else 0.0
        else:
            by_length[a.size].append(index)
    for indices in by_length.values():
        a = np.stack([pairs[index][0] for index in indices])
        b = np.stack([pairs[index][1] for index in indices])
        result = scipy.stats.ttest_rel(a, b, axis=-1)
        for row, index in enumerate(indices):
            p_values[index] = float(np.atleast_1d(result.pvalue)[row])
    return p_values


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values, in the input order.

    Sorted ascending, the i-th smallest (i from 0) becomes max over j ≤ i of min(1, (m − j) p_(j)); the
    running maximum keeps the adjusted values in the same order as the raw ones.
    """
    count = len(p_values)
    adjusted = [0.0] * count
    running = 0.0
    for rank, index in enumerate(sorted(range(count), key=lambda i: p_values[i])):
        running = max(running, min(1.0, (count - rank) * p_values[index]))
        adjusted[index] = running
    return adjusted
