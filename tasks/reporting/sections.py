"""The parts of the report that read files beyond evaluation.json: metrics curves, the best run's images, metadata."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from tasks.core.errors import ReportError, RunFolderError
from tasks.core.runfolder import RunFolder
from tasks.data.dataset import CLASS_NAMES
from tasks.reporting import comparison, figures

MISCLASSIFIED_IMAGES = 25


def run_metrics(results: list[comparison.RunResult]) -> dict[Path, dict[str, np.ndarray] | None]:
    """Each run's metrics.parquet, read once; None for a run that diverged before its first epoch ended."""
    metrics: dict[Path, dict[str, np.ndarray] | None] = {}
    for run in results:
        folder = RunFolder(run.run_dir, run.run_hash, run.seed)
        if run.status != "completed" and not folder.metrics_path.exists():
            metrics[run.run_dir] = None
            continue
        try:
            metrics[run.run_dir] = folder.metrics()
        except RunFolderError as exc:
            raise ReportError(f"{exc}; delete the run folder and retrain") from None
    return metrics


def correctness(results: list[comparison.RunResult], labels: np.ndarray) -> dict[tuple[str, int], np.ndarray]:
    """(entry, seed) → 0/1 per test image, for every chosen completed run, from its predictions.parquet."""
    vectors = {}
    for run in results:
        if not (run.chosen and run.status == "completed"):
            continue
        try:
            predictions = RunFolder(run.run_dir, run.run_hash, run.seed).predictions()
        except RunFolderError as exc:
            raise ReportError(f"{exc}; rerun EvaluateRun for {run.name} seed {run.seed}") from None
        if len(predictions) != len(labels):
            raise ReportError(
                f"{run.run_dir}: {len(predictions)} predictions for the {len(labels)} test images; it was scored on "
                "another test set: rerun EvaluateRun"
            )
        vectors[run.name, run.seed] = predictions == labels
    return vectors


def curve_series(point: comparison.GridPoint, row: dict[str, Any], metrics: dict) -> dict[str, Any]:
    """Mean and sample std over seeds, per epoch, of a grid point's metrics.parquet curves.

    Completed seeds only, unless none completed: then the diverged seeds' partial curves are all there is.
    """
    values: dict[str, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    for run in point.completed or point.runs:
        columns = metrics[run.run_dir]
        if columns is None:
            continue  # diverged in its first epoch: no curve to draw
        for key, _ in figures.CURVE_PANELS:
            for epoch, value in zip(columns["epoch"], columns[key]):
                values[key][int(epoch)].append(float(value))
    epochs = sorted(values["val_accuracy"])
    label = f"{row['name']} (lr={row['learning_rate']:g})" + ("" if point.completed else " – diverged")
    series: dict[str, Any] = {"label": label, "epochs": epochs}
    for key, _ in figures.CURVE_PANELS:
        stats = [comparison.mean_std(values[key][epoch]) for epoch in epochs]
        series[key] = ([mean for mean, _ in stats], [std or 0.0 for _, std in stats])
    return series


def best_run_context(best: comparison.RunResult, images: np.ndarray, figure) -> dict[str, Any]:
    test = best.evaluation["test"]
    caption = f"{best.name}, lr={best.learning_rate:g}, seed {best.seed}"
    figures.confusion_matrix(
        figure("confusion_matrix"), test["confusion_matrix"], CLASS_NAMES, f"Confusion matrix – {caption}"
    )
    figures.per_class_accuracy(
        figure("per_class_accuracy"), test["per_class_accuracy"], CLASS_NAMES, f"Per-class test accuracy – {caption}"
    )
    shown = test["misclassified"][:MISCLASSIFIED_IMAGES]
    if any(item["index"] >= len(images) for item in shown):
        raise ReportError(
            f"{best.run_dir / 'evaluation.json'}: misclassified row indices exceed the test set's "
            f"{len(images)} rows; it was scored on another test set: rerun EvaluateRun"
        )
    figures.image_grid(
        figure("misclassified"),
        images[[item["index"] for item in shown]],
        [f"{CLASS_NAMES[item['true']]} → {CLASS_NAMES[item['predicted']]}" for item in shown],
    )
    per_class = [
        {
            "name": CLASS_NAMES[index],
            "examples": test["class_counts"][index],
            "correct": test["confusion_matrix"][index][index],
            "accuracy": test["per_class_accuracy"][index],
        }
        for index in range(len(CLASS_NAMES))
    ]
    return {"run": best, "caption": caption, "test": test, "per_class": per_class, "misclassified_shown": len(shown)}


def metadata(results: list[comparison.RunResult]) -> dict[str, Any]:
    """Versions, hardware and threads as every distinct value seen across the runs (ideally one each)."""
    distinct: dict[str, dict[str, list[str]]] = {"versions": {}, "hardware": {}, "threads": {}}
    for result in results:
        for section, values in distinct.items():
            for key, value in (result.run.get(section) or {}).items():
                seen = values.setdefault(key, [])
                if str(value) not in seen:
                    seen.append(str(value))
    walls = [result.wall_seconds for result in results if result.wall_seconds is not None]
    return {**distinct, "total_wall_seconds": float(sum(walls)), "runs": len(results)}


def experiment_settings(results: list[comparison.RunResult]) -> dict[str, Any] | None:
    """The model and training settings (run.json's `settings`) that every run of an experiment shares."""
    return next((result.run["settings"] for result in results if result.run.get("settings")), None)
