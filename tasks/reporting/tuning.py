"""Choose one learning rate of a grid on the tuning seeds, by validation accuracy alone.

The rule: the grid point with the highest mean final validation accuracy over the tuning seeds wins; a
run that diverged counts as 0 (a rate that sometimes blows up is not chosen over one that never does);
ties go to the smaller learning rate. The test set is never read here.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tasks.core.errors import ReportError
from tasks.core.runfiles import METRICS_PARQUET, RUN_JSON, read_metrics
from tasks.core.storage import read_json

RULE = (
    "highest mean final validation accuracy over the tuning seeds (a diverged run counts as 0; "
    "ties go to the smaller learning rate); the test set is not looked at"
)


def final_val_accuracy(run_dir: Path) -> float:
    """The run's validation accuracy after its last epoch, or 0.0 if it diverged."""
    record = read_json(Path(run_dir) / RUN_JSON)
    if record.get("status") == "diverged":
        return 0.0
    metrics = read_metrics(Path(run_dir) / METRICS_PARQUET)
    if len(metrics["val_accuracy"]) == 0:
        raise ReportError(f"{run_dir}: a completed run without metrics rows; delete the run folder and retrain")
    return float(metrics["val_accuracy"][-1])


def choose_learning_rate(entry: str, tuning_seeds: Sequence[int], runs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The tuning record of one entry from its grid runs: dicts with learning_rate, run_hash, seed, run_dir."""
    by_rate: dict[float, list[dict[str, Any]]] = {}
    for run in runs:
        by_rate.setdefault(float(run["learning_rate"]), []).append(run)
    if not by_rate:
        raise ReportError(f"tuning {entry!r}: no grid runs to choose from")
    grid = []
    for rate in sorted(by_rate):
        points = sorted(by_rate[rate], key=lambda run: run["seed"])
        accuracies = [final_val_accuracy(run["run_dir"]) for run in points]
        grid.append(
            {
                "learning_rate": rate,
                "run_hash": points[0]["run_hash"],
                "seeds": [run["seed"] for run in points],
                "val_accuracies": accuracies,
                "mean_val_accuracy": statistics.fmean(accuracies),
                "std_val_accuracy": statistics.stdev(accuracies) if len(accuracies) > 1 else 0.0,
            }
        )
    # max() keeps the first of equal keys, and the grid is in increasing rate: ties → the smaller rate.
    chosen = max(grid, key=lambda point: point["mean_val_accuracy"])
    return {
        "entry": entry,
        "tuning_seeds": list(tuning_seeds),
        "grid": grid,
        "chosen_learning_rate": chosen["learning_rate"],
        "rule": RULE,
    }
