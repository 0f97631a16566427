"""The optimizer-comparison report: a self-contained folder of HTML, Markdown, PNGs and a Parquet summary.

Numbers come from tasks.reporting.comparison (evaluation.json) and from each run's metrics.parquet; this module
only arranges them: figures, the two templates, and atomic writes. report.html is written last, so its
presence means the folder is complete.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jinja2
import numpy as np
import pyarrow.parquet as pq

from tasks.core.errors import DataError, EvaluationError, ReportError
from tasks.core.faults import crash_point
from tasks.core.runfiles import METRICS_PARQUET, read_metrics
from tasks.core.storage import atomic_open, atomic_path, ensure_dir, write_bytes_atomic
from tasks.data.arrays import load_arrays
from tasks.data.dataset import CLASS_NAMES
from tasks.reporting import comparison, figures

TEMPLATES = Path(__file__).parent / "templates"
FIGURES = "figures"
SAMPLE_IMAGES = 25
MISCLASSIFIED_IMAGES = 25


def build_report(
    out_dir: Path,
    *,
    experiment: str,
    title: str,
    date: str,
    config_hash: str,
    config_text: str,
    runs: list[dict],
    test_arrow: Path,
    alerts: Sequence[str] = (),
    extra_figures: Sequence[tuple[str, Path]] = (),
) -> dict[str, Any]:
    """Write report.html, report.md, figures/*.png and summary.parquet into `out_dir`; return their paths."""
    if not runs:
        raise ReportError(f"{out_dir}: no runs to report; the config must name at least one run")
    out_dir = Path(out_dir)
    ensure_dir(out_dir / FIGURES)
    compared = comparison.compare(runs)
    results, grid, best_points, rows = compared.results, compared.grid, compared.best_points, compared.rows
    best = comparison.best_run(results)
    try:
        images, labels = load_arrays(test_arrow)
    except DataError as exc:
        raise ReportError(f"cannot read the test images for the report: {exc}") from None

    written: dict[str, Path] = {}

    def figure(name: str) -> Path:
        written[name] = out_dir / FIGURES / f"{name}.png"
        return written[name]

    curves = [_curve_series(best_points[row["name"]], row) for row in rows]
    figures.learning_curves(figure("learning_curves"), [series for series in curves if series["epochs"]])
    figures.accuracy_bars(
        figure("test_accuracy"),
        [row["name"] for row in rows],
        [row["test_accuracy_mean"] for row in rows],
        [row["test_accuracy_std"] for row in rows],
    )
    if any(len(points) > 1 for points in grid.values()):
        figures.lr_sensitivity(figure("lr_sensitivity"), [_lr_line(name, points) for name, points in grid.items()])
    sample_rows = range(min(SAMPLE_IMAGES, len(labels)))
    figures.image_grid(
        figure("test_samples"), images[list(sample_rows)], [CLASS_NAMES[labels[row]] for row in sample_rows]
    )
    best_context = None
    if best is not None:
        best_context = _best_run_context(best, images, figure)
    extras = []
    for index, (heading, given) in enumerate(extra_figures, start=1):
        source = Path(given)
        if not source.is_file():
            raise ReportError(f"extra figure {heading!r}: {source} not found; write it before building the report")
        target = figure(f"extra-{index}-{_slug(heading)}")
        write_bytes_atomic(target, source.read_bytes())
        extras.append({"title": heading, "path": f"{FIGURES}/{target.name}"})

    # A rebuild into the same dated folder (config edited the same day) must not leave figures of the old
    # report lying beside the new one; the folder is ours, and only its PNGs are touched.
    for stale in set((out_dir / FIGURES).glob("*.png")) - set(written.values()):
        stale.unlink(missing_ok=True)
    crash_point("report.figures-written")

    summary_path = out_dir / "summary.parquet"
    with atomic_path(summary_path, suffix=".parquet") as temp:
        pq.write_table(comparison.summary_table(results), temp)

    context = {
        "title": title,
        "experiment": experiment,
        "date": date,
        "config_hash": config_hash,
        "config_text": config_text,
        "alerts": list(alerts),
        "rows": rows,
        "runs": results,
        "figures": {name: f"{FIGURES}/{path.name}" for name, path in written.items()},
        "best": best_context,
        "extras": extras,
        "metadata": _metadata(results),
        "sgd_present": any(row["overhead_vs_sgd"] is not None for row in rows),
        "class_names": CLASS_NAMES,
    }
    markdown_path, html_path = out_dir / "report.md", out_dir / "report.html"
    for path, template in ((markdown_path, "report.md.j2"), (html_path, "report.html.j2")):
        text = _environment().get_template(template).render(**context)
        with atomic_open(path, "w") as handle:
            handle.write(text)
    return {
        "html": html_path,
        "markdown": markdown_path,
        "summary": summary_path,
        "figures": list(written.values()),
        "table": rows,
    }


def _curve_series(point: comparison.GridPoint, row: dict[str, Any]) -> dict[str, Any]:
    """Mean and sample std over seeds, per epoch, of a grid point's metrics.parquet curves.

    Completed seeds only, unless none completed: then the diverged seeds' partial curves are all there is.
    """
    runs = point.completed or point.runs
    values: dict[str, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    for run in runs:
        if run.status == "diverged" and not (run.run_dir / METRICS_PARQUET).exists():
            continue  # diverged in its first epoch: no curve to draw
        try:
            metrics = read_metrics(run.run_dir / METRICS_PARQUET)
        except EvaluationError as exc:
            raise ReportError(str(exc)) from None
        for key, _ in figures.CURVE_PANELS:
            for epoch, value in zip(metrics["epoch"], metrics[key]):
                values[key][int(epoch)].append(float(value))
    epochs = sorted(values["val_accuracy"])
    label = f"{row['name']} (lr={row['learning_rate']:g})" + ("" if point.completed else " – diverged")
    series: dict[str, Any] = {"label": label, "epochs": epochs}
    for key, _ in figures.CURVE_PANELS:
        stats = [comparison.mean_std(values[key][epoch]) for epoch in epochs]
        series[key] = ([mean for mean, _ in stats], [std or 0.0 for _, std in stats])
    return series


def _lr_line(name: str, points: list[comparison.GridPoint]) -> dict[str, Any]:
    ordered = sorted(points, key=lambda point: point.learning_rate)
    return {
        "label": name,
        "learning_rates": [point.learning_rate for point in ordered],
        "val_accuracy": [point.mean_final_val_accuracy for point in ordered],
        "diverged_learning_rates": [point.learning_rate for point in ordered for _ in range(point.diverged)],
    }


def _best_run_context(best: comparison.RunResult, images: np.ndarray, figure) -> dict[str, Any]:
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


def _metadata(results: list[comparison.RunResult]) -> dict[str, Any]:
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


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:40] or "figure"


def _number(value: float | None, digits: int = 4) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _plus_minus(mean: float | None, std: float | None, digits: int = 4) -> str:
    if mean is None:
        return "n/a"
    return _number(mean, digits) + ("" if std is None else f" ± {_number(std, digits)}")


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "n/a"
    minutes, secs = divmod(float(seconds), 60)
    hours, minutes = divmod(int(minutes), 60)
    return (f"{hours} h " if hours else "") + (f"{minutes} min " if hours or minutes else "") + f"{secs:.1f} s"


def _ratio(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}×"


def _markdown_cell(value: Any) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def _fence(text: str) -> str:
    """A backtick fence longer than any run of backticks inside `text`, so the block cannot end early."""
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    return "`" * max(3, longest + 1)


def _environment() -> jinja2.Environment:
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES)),
        autoescape=jinja2.select_autoescape(enabled_extensions=("html.j2",), default_for_string=False),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    environment.filters.update(
        num=_number, pm=_plus_minus, duration=_duration, ratio=_ratio, md=_markdown_cell, fence=_fence
    )
    return environment
