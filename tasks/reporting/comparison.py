"""The numbers of the optimizer comparison: per-run results, grid points, best points, table rows.

Everything here is read from each run's evaluation.json (and run.json for wall time), once. The
report's HTML and Markdown tables, its figures and summary.parquet all render these same objects, so
no number is computed twice in two different ways. summary.parquet has one row per run; `chosen` marks
the runs of each entry's chosen grid point, the ones tasks.reporting.statistics compares, and the
time-to-target columns (tasks.reporting.targets) follow, their targets in the schema metadata.

An entry's best grid point is chosen by the one selection rule (tasks.core.selection) on validation
accuracy; test accuracy is never used to choose.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from tasks.core.errors import ReportError, RunFolderError
from tasks.core.runfolder import COMPLETED, DIVERGED, FAILED
from tasks.core.runs import RunOnDisk
from tasks.core.selection import GridScore, select
from tasks.reporting.targets import TARGETS_METADATA_KEY
from tasks.reporting.targets import columns as target_columns

SGD_ENTRY = "sgd"
SUMMARY_SCHEMA = pa.schema(
    [
        ("name", pa.string()),
        ("optimizer", pa.string()),
        ("learning_rate", pa.float64()),
        ("seed", pa.int64()),
        ("run_hash", pa.string()),
        ("status", pa.string()),
        ("test_accuracy", pa.float64()),
        ("test_loss", pa.float64()),
        ("best_val_accuracy", pa.float64()),
        ("best_val_epoch", pa.int32()),
        ("final_val_accuracy", pa.float64()),
        ("seconds_per_epoch", pa.float64()),
        ("wall_seconds", pa.float64()),
        ("chosen", pa.bool_()),
    ]
)


@dataclass
class RunResult:
    """One run as the report sees it. Result fields are None for a diverged run: nothing is invented."""

    name: str
    optimizer: str
    learning_rate: float
    params: dict[str, Any]
    seed: int
    run_hash: str
    status: str
    run_dir: Path
    schedule: str  # the learning-rate schedule in words (ScheduleConfig.describe), "constant" by default
    run: Mapping[str, Any]  # run.json, checked by its RunFolder
    evaluation: Mapping[str, Any]  # evaluation.json, checked by its RunFolder
    test_accuracy: float | None = None
    test_loss: float | None = None
    best_val_accuracy: float | None = None
    best_val_epoch: int | None = None
    final_val_accuracy: float | None = None
    seconds_per_epoch: float | None = None
    wall_seconds: float | None = None
    chosen: bool = False
    failure: str | None = None  # a failed run's error (a plugin's code failed before training began)
    time_to_target: list[tuple[int | None, float | None]] = field(default_factory=list)

    def summary_row(self, targets: Sequence[float] = ()) -> dict[str, Any]:
        row = {name: getattr(self, name) for name in SUMMARY_SCHEMA.names}
        for target, (epochs, seconds) in zip(targets, self.time_to_target or [(None, None)] * len(targets)):
            epochs_column, seconds_column = target_columns(target)
            row[epochs_column], row[seconds_column] = epochs, seconds
        return row

    @property
    def diverged_text(self) -> str:
        """What the report says for a run without a result: where it diverged, or why it failed."""
        if self.status == FAILED:
            failure = self.failure or "no reason recorded"
            return f"failed: {failure if len(failure) <= 300 else failure[:299] + '…'}"
        where = self.evaluation.get("diverged_at") or {}
        return f"diverged at epoch {where.get('epoch', '?')}, step {where.get('step', '?')}"


def run_result(run: RunOnDisk) -> RunResult:
    """One run's numbers, read through its RunFolder (evaluation.json and run.json, checked there)."""
    spec, folder = run
    try:
        record, evaluation = folder.record(), folder.evaluation()
    except RunFolderError as exc:
        raise ReportError(f"{spec.name} seed {spec.seed}: {exc}; rerun EvaluateRun for it") from None
    optimizer = spec.settings.optimizer
    result = RunResult(
        name=spec.name,
        optimizer=optimizer.name,
        learning_rate=optimizer.learning_rate,
        params=dict(optimizer.params),
        schedule=optimizer.schedule.describe(),
        seed=spec.seed,
        run_hash=spec.run_hash,
        status=record.status,
        run_dir=folder.path,
        run=record.data,
        evaluation=evaluation.data,
        wall_seconds=record.get("wall_seconds"),
        failure=record.get("failure") if record.status == FAILED else None,
    )
    metrics = evaluation.metrics
    if metrics:
        result.seconds_per_epoch = metrics.get("seconds_per_epoch")
    if not record.has_result:
        return result
    test = evaluation.test
    if not test or not metrics:
        raise ReportError(
            f"{folder.evaluation_json}: a completed run without test scores or metrics; rerun EvaluateRun"
        )
    result.test_accuracy, result.test_loss = test["accuracy"], test["loss"]
    result.best_val_accuracy, result.best_val_epoch = metrics["best"]["val_accuracy"], metrics["best"]["epoch"]
    result.final_val_accuracy = metrics["final"]["val_accuracy"]
    return result


def mean_std(values: list[float | None]) -> tuple[float | None, float | None]:
    """Mean and sample std (ddof=1) over the non-null values; std is None with fewer than two."""
    present = np.array([value for value in values if value is not None], dtype=np.float64)
    if present.size == 0:
        return None, None
    return float(present.mean()), float(present.std(ddof=1)) if present.size > 1 else None


@dataclass
class GridPoint:
    """All seeds of one (entry, hyper-parameters) point, identified by its run hash."""

    name: str
    run_hash: str
    learning_rate: float
    runs: list[RunResult] = field(default_factory=list)

    @property
    def completed(self) -> list[RunResult]:
        return [run for run in self.runs if run.status == COMPLETED]

    @property
    def diverged(self) -> int:
        return len(self.runs) - len(self.completed)

    @property
    def mean_final_val_accuracy(self) -> float | None:
        return mean_std([run.final_val_accuracy for run in self.completed])[0]


def group_grid(results: list[RunResult]) -> dict[str, list[GridPoint]]:
    """Entry name → its grid points, both in the order the runs were given (config order)."""
    grid: dict[str, dict[str, GridPoint]] = {}
    for result in results:
        points = grid.setdefault(result.name, {})
        point = points.setdefault(result.run_hash, GridPoint(result.name, result.run_hash, result.learning_rate))
        if any(run.seed == result.seed for run in point.runs):
            raise ReportError(
                f"{result.name} (run {result.run_hash}) lists seed {result.seed} twice; pass each run once"
            )
        point.runs.append(result)
    return {name: list(points.values()) for name, points in grid.items()}


def select_best(points: list[GridPoint]) -> GridPoint:
    """The grid point the one selection rule (tasks.core.selection) picks from the runs' validation accuracies."""
    scores = [GridScore(point.learning_rate, tuple(run.final_val_accuracy for run in point.runs)) for point in points]
    return points[select(scores)]


def format_params(params: dict[str, Any]) -> str:
    return ", ".join(f"{key}={value}" for key, value in sorted(params.items())) or "defaults"


def table_rows(grid: dict[str, list[GridPoint]], best: dict[str, GridPoint]) -> list[dict[str, Any]]:
    """One row per entry at its best grid point: what the templates render and build_report returns."""
    rows = []
    for name, points in grid.items():
        point = best[name]
        first = point.runs[0]
        completed = point.completed
        test_mean, test_std = mean_std([run.test_accuracy for run in completed])
        rows.append(
            {
                "name": name,
                "optimizer": first.optimizer,
                "learning_rate": point.learning_rate,
                "params": format_params(first.params),
                "schedule": first.schedule,
                "run_hash": point.run_hash,
                "status": COMPLETED
                if completed
                else (FAILED if all(r.status == FAILED for r in point.runs) else DIVERGED),
                "seeds": [run.seed for run in point.runs],
                "grid_points": len(points),
                "test_accuracy_mean": test_mean,
                "test_accuracy_std": test_std,
                "test_loss_mean": mean_std([run.test_loss for run in completed])[0],
                "best_val_accuracy_mean": mean_std([run.best_val_accuracy for run in completed])[0],
                "best_val_epochs": [run.best_val_epoch for run in completed],
                "final_val_accuracy_mean": point.mean_final_val_accuracy,
                "diverged_runs": sum(run.status == DIVERGED for p in points for run in p.runs),
                "failed_runs": sum(run.status == FAILED for p in points for run in p.runs),
                "total_runs": sum(len(p.runs) for p in points),
                "seconds_per_epoch": mean_std([run.seconds_per_epoch for run in point.runs])[0],
                "overhead_vs_sgd": None,
            }
        )
    reference = next((row for row in rows if row["name"] == SGD_ENTRY), None)
    if reference is None:  # an entry may be renamed, e.g. "sgd-baseline"; the registry name still says sgd
        reference = next((row for row in rows if row["optimizer"] == SGD_ENTRY), None)
    if reference is not None and reference["seconds_per_epoch"]:
        for row in rows:
            if row["seconds_per_epoch"] is not None:
                row["overhead_vs_sgd"] = row["seconds_per_epoch"] / reference["seconds_per_epoch"]
    return rows


def best_run(results: list[RunResult]) -> RunResult | None:
    """The completed run with the highest test accuracy (first on ties): shown, never used to select."""
    completed = [run for run in results if run.status == "completed"]
    return max(completed, key=lambda run: run.test_accuracy) if completed else None


def summary_schema(targets: Sequence[float] = ()) -> pa.Schema:
    fields = list(SUMMARY_SCHEMA)
    for target in targets:
        epochs_column, seconds_column = target_columns(target)
        fields += [pa.field(epochs_column, pa.int32()), pa.field(seconds_column, pa.float64())]
    return pa.schema(fields, metadata={TARGETS_METADATA_KEY: json.dumps(list(targets)).encode()})


def summary_table(results: list[RunResult], targets: Sequence[float] = ()) -> pa.Table:
    rows = [result.summary_row(targets) for result in results]
    return pa.Table.from_pylist(rows, schema=summary_schema(targets))


def summary_targets(schema: pa.Schema) -> list[float]:
    """The validation-accuracy targets a summary.parquet was written with (its schema metadata)."""
    return json.loads((schema.metadata or {}).get(TARGETS_METADATA_KEY, b"[]"))


@dataclass
class Comparison:
    """Everything the report shows, computed once from the runs."""

    results: list[RunResult]
    grid: dict[str, list[GridPoint]]
    best_points: dict[str, GridPoint]
    rows: list[dict[str, Any]]


def compare(runs: Sequence[RunOnDisk]) -> Comparison:
    """Results per run, the grid per entry, each entry's best point (on validation) and the table rows."""
    results = [run_result(run) for run in runs]
    grid = group_grid(results)
    best_points = {name: select_best(points) for name, points in grid.items()}
    for point in best_points.values():
        for run in point.runs:
            run.chosen = True
    return Comparison(results, grid, best_points, table_rows(grid, best_points))
