"""Learning-rate tuning: the choice on the tuning seeds (TuneLearningRate's work), and how the report shows it.

`choose_learning_rate` reads a tuned entry's grid runs (validation accuracy only) and writes the tuning
record. A tuned entry comes with the `tuning` argument of build_report: its grid was run on the tuning seeds and
judged on validation only, and `runs` holds the chosen point on every seed. An untuned entry whose config
lists several learning rates has its whole grid in `runs`; its point is chosen by tasks.reporting.comparison
(the rule below). Either way the test set plays no part in the choice.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from tasks.core.errors import ReportError
from tasks.core.runfiles import METRICS_PARQUET, RUN_JSON, read_metrics
from tasks.core.storage import read_json, write_json_atomic
from tasks.reporting import comparison

GRID_RULE = "the grid point with the fewest diverged seeds, then the highest mean final validation accuracy over seeds"
TUNING_RULE = (
    "on the tuning seeds: the grid point with the fewest diverged runs, then the highest mean final validation "
    "accuracy, then the smaller learning rate; the test set is not looked at"
)
TUNING_KEYS = ("tuning_seeds", "grid", "chosen_learning_rate", "rule")
GRID_KEYS = ("learning_rate", "val_accuracies", "mean_val_accuracy", "std_val_accuracy")


def check_tuning(tuning: Mapping[str, Any] | None, best_points: Mapping[str, comparison.GridPoint]) -> dict:
    """`tuning` checked against the runs; ReportError names the entry and key at fault."""
    if tuning is None:
        return {}
    if not isinstance(tuning, Mapping):
        raise ReportError(f"tuning: expected a dict of entry name → tuning record, found {type(tuning).__name__}")
    for name, record in tuning.items():
        where = f"tuning[{name!r}]"
        if name not in best_points:
            raise ReportError(f"{where}: no runs of entry {name!r}; expected one of {sorted(best_points)}")
        missing = [key for key in TUNING_KEYS if key not in record]
        if missing or not record["grid"]:
            raise ReportError(f"{where}: missing {missing or ['grid points']}; expected keys {list(TUNING_KEYS)}")
        for index, point in enumerate(record["grid"]):
            absent = [key for key in GRID_KEYS if key not in point]
            if absent:
                raise ReportError(f"{where}.grid[{index}]: missing {absent}; expected keys {list(GRID_KEYS)}")
        chosen, used = float(record["chosen_learning_rate"]), best_points[name].learning_rate
        if not math.isclose(chosen, used, rel_tol=1e-9):
            raise ReportError(
                f"{where}: chosen_learning_rate {chosen:g}, but the runs of {name!r} use {used:g}; "
                "rerun the experiment so that the final runs use the tuned learning rate"
            )
    return dict(tuning)


def sensitivity_lines(
    grid: Mapping[str, list[comparison.GridPoint]],
    best_points: Mapping[str, comparison.GridPoint],
    tuning: Mapping[str, Any],
) -> list[dict[str, Any]]:
    """One line per entry with more than one learning rate: validation accuracy ± std per rate, the choice, why.

    Each line: label, learning_rates, mean, std (None where no seed completed), diverged_learning_rates
    (one per diverged run), chosen_learning_rate, rule, seeds (what the means are over), tuned.
    """
    lines = []
    for name, points in grid.items():
        if name in tuning:
            record = tuning[name]
            ordered = sorted(record["grid"], key=lambda point: float(point["learning_rate"]))
            values = [[v for v in point["val_accuracies"] if v is not None] for point in ordered]
            diverged = [
                float(point["learning_rate"]) for point in ordered for v in point["val_accuracies"] if v is None
            ]
            lines.append(
                {
                    "label": name,
                    "learning_rates": [float(point["learning_rate"]) for point in ordered],
                    "mean": [point["mean_val_accuracy"] for point in ordered],
                    "std": [point["std_val_accuracy"] if len(v) > 1 else None for point, v in zip(ordered, values)],
                    "diverged_learning_rates": diverged,
                    "chosen_learning_rate": float(record["chosen_learning_rate"]),
                    "rule": str(record["rule"]),
                    "seeds": f"seeds {', '.join(str(seed) for seed in record['tuning_seeds'])}",
                    "tuned": True,
                }
            )
        elif len(points) > 1:
            ordered = sorted(points, key=lambda point: point.learning_rate)
            stats = [comparison.mean_std([run.final_val_accuracy for run in point.completed]) for point in ordered]
            lines.append(
                {
                    "label": name,
                    "learning_rates": [point.learning_rate for point in ordered],
                    "mean": [mean for mean, _ in stats],
                    "std": [std for _, std in stats],
                    "diverged_learning_rates": [
                        point.learning_rate for point in ordered for _ in range(point.diverged)
                    ],
                    "chosen_learning_rate": best_points[name].learning_rate,
                    "rule": GRID_RULE,
                    "seeds": "all seeds of the experiment",
                    "tuned": False,
                }
            )
    return lines


def final_val_accuracy(run_dir: Path) -> float | None:
    """The run's validation accuracy after its last epoch; None if it diverged."""
    record = read_json(Path(run_dir) / RUN_JSON)
    if record.get("status") == "diverged":
        return None
    metrics = read_metrics(Path(run_dir) / METRICS_PARQUET)
    if len(metrics["val_accuracy"]) == 0:
        raise ReportError(f"{run_dir}: a completed run without metrics rows; delete the run folder and retrain")
    return float(metrics["val_accuracy"][-1])


def choose_learning_rate(
    entry: str, tuning_seeds: Sequence[int], runs: Sequence[Mapping[str, Any]], out_path: Path
) -> dict:
    """Write the tuning record of one entry, from its grid runs (dicts with learning_rate, run_hash, seed,
    run_dir), to `out_path`, and return it."""
    by_rate: dict[float, list[Mapping[str, Any]]] = {}
    for run in runs:
        by_rate.setdefault(float(run["learning_rate"]), []).append(run)
    if not by_rate:
        raise ReportError(f"tuning {entry!r}: no grid runs to choose from")
    grid = []
    for rate in sorted(by_rate):
        points = sorted(by_rate[rate], key=lambda run: run["seed"])
        accuracies = [final_val_accuracy(run["run_dir"]) for run in points]
        completed = [value for value in accuracies if value is not None]
        grid.append(
            {
                "learning_rate": rate,
                "run_hash": points[0]["run_hash"],
                "seeds": [run["seed"] for run in points],
                "val_accuracies": accuracies,
                "mean_val_accuracy": statistics.fmean(completed) if completed else None,
                "std_val_accuracy": statistics.stdev(completed) if len(completed) > 1 else None,
            }
        )

    def merit(point: dict) -> tuple[int, float]:
        diverged = sum(value is None for value in point["val_accuracies"])
        return -diverged, point["mean_val_accuracy"] if point["mean_val_accuracy"] is not None else -1.0

    # max() keeps the first of equal keys and the grid is in increasing rate: ties go to the smaller rate.
    chosen = max(grid, key=merit)
    record = {
        "entry": entry,
        "tuning_seeds": list(tuning_seeds),
        "grid": grid,
        "chosen_learning_rate": chosen["learning_rate"],
        "rule": TUNING_RULE,
    }
    write_json_atomic(out_path, record)
    return record
