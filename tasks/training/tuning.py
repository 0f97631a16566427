"""Learning-rate tuning (TuneLearningRate's work): choose a tuned entry's grid point on the tuning seeds.

The grid runs are read through their RunFolders (validation accuracy only), the one selection rule
(tasks.core.selection) picks the point, and the tuning record is written last, atomically. No TensorFlow.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from tasks.core.errors import RunFolderError, TrainingError
from tasks.core.runfolder import RunFolder
from tasks.core.runs import RunOnDisk
from tasks.core.selection import TUNING_RULE, GridScore, select
from tasks.core.storage import write_json_atomic


def final_val_accuracy(folder: RunFolder) -> float | None:
    """The run's validation accuracy after its last epoch; None if it diverged."""
    try:
        if folder.record().diverged:
            return None
        rows = folder.metric_rows()
    except RunFolderError as exc:
        raise TrainingError(f"tuning reads a grid run that is not whole: {exc}; rerun the command") from None
    if not rows:
        raise TrainingError(f"{folder.path}: a completed run without metrics rows; delete the run folder and retrain")
    return float(max(rows, key=lambda row: row["epoch"])["val_accuracy"])


def choose_learning_rate(entry: str, tuning_seeds: Sequence[int], runs: Sequence[RunOnDisk], out_path: Path) -> dict:
    """Write the tuning record of one entry from its grid runs to `out_path`, and return it."""
    by_rate: dict[float, list[RunOnDisk]] = {}
    for run in runs:
        by_rate.setdefault(run.spec.learning_rate, []).append(run)
    if not by_rate:
        raise TrainingError(f"tuning {entry!r}: no grid runs to choose from")
    grid = []
    for rate in sorted(by_rate):
        points = sorted(by_rate[rate], key=lambda run: run.spec.seed)
        score = GridScore(rate, tuple(final_val_accuracy(run.folder) for run in points))
        grid.append(
            {
                "learning_rate": rate,
                "run_hash": points[0].spec.run_hash,
                "seeds": [run.spec.seed for run in points],
                "val_accuracies": list(score.val_accuracies),
                "mean_val_accuracy": score.mean,
                "std_val_accuracy": score.std,
            }
        )
    scores = [GridScore(point["learning_rate"], tuple(point["val_accuracies"])) for point in grid]
    record = {
        "entry": entry,
        "tuning_seeds": list(tuning_seeds),
        "grid": grid,
        "chosen_learning_rate": grid[select(scores)]["learning_rate"],
        "rule": TUNING_RULE,
    }
    write_json_atomic(out_path, record)
    return record
