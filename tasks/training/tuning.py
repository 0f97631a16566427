"""Learning-rate tuning (TuneLearningRate's work): choose a tuned entry's grid point on the tuning seeds.

`tune` is a generator of training requests, so the DAG can run each step as Luigi dynamic dependencies and
a rerun (or a rerun after a kill) replays it from the run folders alone:

1. successive halving (config `tuning.halving`): at each rung epoch, every point still in the race is
   trained to that epoch and ranked on its validation accuracy there (tasks.core.selection.halve); the rest
   stop, their later epochs never trained;
2. the points left train all epochs, and the one rule picks among them on final validation accuracy;
3. edge extension (config `tuning.extend`): a choice at an edge of the grid adds the next point beyond it,
   and the search runs again on the wider grid, up to the cap.

The record says what was extended, where each rung cut, each point's stop, the selection stability over
resampled tuning seeds, and (with halving) the choice full tuning makes when the full runs of every point
happen to be on disk. It is written last, atomically. No TensorFlow.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Sequence
from pathlib import Path

from tasks.core.config import ExperimentConfig, OptimizerEntry
from tasks.core.errors import RunFolderError, TrainingError
from tasks.core.runfolder import RunFolder
from tasks.core.runs import RunSpec, grid_specs
from tasks.core.selection import (
    STABILITY_WARNING,
    TUNING_RULE,
    GridScore,
    at_edge,
    beyond_edge,
    halve,
    select,
    selection_stability,
)
from tasks.core.storage import write_json_atomic

# (runs, epoch): train these runs to that epoch (None: all epochs) before the search goes on.
Request = tuple[list[RunSpec], int | None]
FolderOf = Callable[[RunSpec], RunFolder]


def _rows(folder: RunFolder) -> list[dict]:
    try:
        return folder.metric_rows()
    except RunFolderError as exc:
        raise TrainingError(f"tuning reads a grid run that is not whole: {exc}; rerun the command") from None


def final_val_accuracy(folder: RunFolder) -> float | None:
    """The run's validation accuracy after its last epoch; None if it diverged."""
    try:
        if folder.record().diverged:
            return None
    except RunFolderError as exc:
        raise TrainingError(f"tuning reads a grid run that is not whole: {exc}; rerun the command") from None
    rows = _rows(folder)
    if not rows:
        raise TrainingError(f"{folder.path}: a completed run without metrics rows; delete the run folder and retrain")
    return float(max(rows, key=lambda row: row["epoch"])["val_accuracy"])


def val_accuracy_at(folder: RunFolder, epoch: int) -> float | None:
    """The run's validation accuracy after `epoch`; None if it diverged before reaching it."""
    for row in _rows(folder):
        if row["epoch"] == epoch:
            return float(row["val_accuracy"])
    if folder.finished and folder.record().diverged:
        return None
    raise TrainingError(f"{folder.path}: no metrics row for epoch {epoch} yet; rerun the command")


def tune(config: ExperimentConfig, entry: OptimizerEntry, folder_of: FolderOf) -> Generator[Request, None, dict]:
    """The search of the module docstring: yields what must be trained next, returns the tuning record."""
    settings = config.tuning
    cap = settings.extend if settings else 0
    halving = settings.halving if settings else None
    rates, extended = sorted(entry.learning_rates), []

    def specs(points: Sequence[float]) -> list[RunSpec]:
        return grid_specs(config, entry, list(points))

    while True:
        alive, stopped, rungs = list(rates), {}, []
        for epoch in halving.rungs if halving else []:
            yield specs(alive), epoch
            scores = [_score(rate, specs([rate]), folder_of, epoch) for rate in alive]
            kept = [alive[index] for index in halve(scores, halving.keep)]
            rungs.append(
                {
                    "epoch": epoch,
                    "val_accuracies": {repr(s.learning_rate): list(s.val_accuracies) for s in scores},
                    "kept": kept,
                }
            )
            stopped.update({s.learning_rate: (epoch, s) for s in scores if s.learning_rate not in kept})
            alive = kept
        yield specs(alive), None
        finals = {rate: _score(rate, specs([rate]), folder_of, None) for rate in alive}
        chosen = alive[select(list(finals.values()))]
        side = at_edge(rates, chosen)
        if side is None or len(extended) >= cap:
            break
        extended.append(beyond_edge(rates, side))
        rates = sorted([*rates, extended[-1]])

    grid = [_point(rate, specs([rate]), finals.get(rate), stopped.get(rate)) for rate in rates]
    stability = selection_stability(list(finals.values()))
    record = {
        "entry": entry.name,
        "tuning_seeds": list(config.tuning_seeds or []),
        "grid": grid,
        "chosen_learning_rate": chosen,
        "rule": TUNING_RULE,
        "extended": extended,
        "extend_cap": cap,
        "at_edge": at_edge(rates, chosen) is not None,
        "halving": halving.model_dump() if halving else None,
        "rungs": rungs,
        "stability": stability,
        "stability_warning": stability is not None and stability < STABILITY_WARNING,
        "full_tuning_choice": full_tuning_choice(rates, specs, folder_of) if halving else chosen,
    }
    return record


def _score(rate: float, runs: list[RunSpec], folder_of: FolderOf, epoch: int | None) -> GridScore:
    ordered = sorted(runs, key=lambda run: run.seed)
    read = final_val_accuracy if epoch is None else (lambda folder: val_accuracy_at(folder, epoch))
    return GridScore(rate, tuple(read(folder_of(run)) for run in ordered))


def _point(rate: float, runs: list[RunSpec], final: GridScore | None, stop: tuple[int, GridScore] | None) -> dict:
    score = final if final is not None else stop[1]
    return {
        "learning_rate": rate,
        "run_hash": runs[0].run_hash,
        "seeds": sorted(run.seed for run in runs),
        "val_accuracies": list(score.val_accuracies),
        "mean_val_accuracy": score.mean,
        "std_val_accuracy": score.std,
        "stopped_at_epoch": stop[0] if final is None else None,
    }


def full_tuning_choice(rates: Sequence[float], specs: Callable, folder_of: FolderOf) -> float | None:
    """The choice tuning without halving makes, when every point's full runs are on disk (else None)."""
    runs = {rate: specs([rate]) for rate in rates}
    if not all(folder_of(run).finished for points in runs.values() for run in points):
        return None
    scores = [_score(rate, runs[rate], folder_of, None) for rate in rates]
    return scores[select(scores)].learning_rate


def run_tuning(steps: Generator[Request, None, dict], train: Callable[[Request], None]) -> dict:
    """Drive `tune` in one process (tests, scripts): `train` each request, then return the record."""
    try:
        request = next(steps)
        while True:
            train(request)
            request = steps.send(None)
    except StopIteration as done:
        return done.value


def write_tuning_record(record: dict, out_path: Path) -> dict:
    write_json_atomic(out_path, record)
    return record
