"""The optimizer-comparison report: a self-contained folder of HTML, Markdown, PNGs and a Parquet summary.

Numbers come from tasks.reporting.comparison (evaluation.json) and from each run's metrics.parquet. The
statistics (tasks.reporting.statistics) and times to target (tasks.reporting.targets) are computed from
the very rows written to summary.parquet, so anyone can recompute them from that file alone. This module
only arranges: figures, the two templates, and atomic writes. report.html is written last, so its
presence means the folder is complete.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from tasks.core.errors import DataError, ReportError
from tasks.core.faults import crash_point
from tasks.core.storage import atomic_open, atomic_path, ensure_dir, write_bytes_atomic, write_json_atomic
from tasks.data.arrays import load_arrays
from tasks.data.dataset import CLASS_NAMES
from tasks.reporting import comparison, figures, sections, stat_figures, statistics
from tasks.reporting.anchors import anchor_rows
from tasks.reporting.render import render, slug
from tasks.reporting.targets import DEFAULT_TARGETS, check_targets, summarize, time_to_targets
from tasks.reporting.tuning import check_tuning, sensitivity_lines

FIGURES = "figures"
SAMPLE_IMAGES = 25
REPORT_JSON = "report.json"
# What report.json carries from build_report's result, under stable keys.
REPORT_JSON_KEYS = ("table", "statistics", "equivalence_margin", "time_to_target", "anchors")


def publish_report(out_dir: Path, record: dict[str, Any], **build: Any) -> dict[str, Any]:
    """Build the report, then write report.json (its completion marker) last, holding `record` too.

    A report with alerts is written without report.json: it is shown, but not marked done.
    """
    result = build_report(out_dir, **build)
    if not build.get("alerts"):
        summary = {key: result[key] for key in REPORT_JSON_KEYS if key in result}
        write_json_atomic(Path(out_dir) / REPORT_JSON, {**record, "html": str(result["html"]), **summary})
    return result


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
    targets: Sequence[float] = DEFAULT_TARGETS,
    tuning: dict | None = None,
    equivalence_margin: float = statistics.EQUIVALENCE_MARGIN,
    correctness: statistics.Correctness | None = None,
    split_varies: bool = False,
    seed_plan: dict | None = None,
) -> dict[str, Any]:
    """Write report.html, report.md, figures/*.png and summary.parquet into `out_dir`.

    Returns their paths, the results table, and the "statistics", "equivalence_margin", "time_to_target"
    and "anchors" blocks (plain JSON data) for report.json. `equivalence_margin`, `correctness` (per-example
    test correctness by (entry, seed)), `split_varies` and `seed_plan` go to tasks.reporting.statistics.
    """
    if not runs:
        raise ReportError(f"{out_dir}: no runs to report; the config must name at least one run")
    targets = check_targets(targets)
    out_dir = Path(out_dir)
    ensure_dir(out_dir / FIGURES)
    compared = comparison.compare(runs)
    results, grid, best_points, rows = compared.results, compared.grid, compared.best_points, compared.rows
    tuning = check_tuning(tuning, best_points)
    metrics = sections.run_metrics(results)
    for result in results:
        result.time_to_target = time_to_targets(metrics[result.run_dir], targets)
    summary = comparison.summary_table(results, targets)
    summary_rows = summary.to_pylist()
    stats = statistics.compute(
        summary_rows, margin=equivalence_margin, correctness=correctness, split_varies=split_varies, plan=seed_plan
    )
    times = summarize(summary_rows, targets)
    names = [row["name"] for row in rows]
    anchors = anchor_rows(
        sections.experiment_settings(results),
        [(row["name"], row["optimizer"]) for row in rows],
        {name: stats["optimizers"][name]["mean"] for name in names},
    )
    try:
        images, labels = load_arrays(test_arrow)
    except DataError as exc:
        raise ReportError(f"cannot read the test images for the report: {exc}") from None

    written: dict[str, Path] = {}

    def figure(name: str) -> Path:
        written[name] = out_dir / FIGURES / f"{name}.png"
        return written[name]

    stat_figures.forest_plot(figure("forest_plot"), names, stats["optimizers"])
    if len(names) > 1:
        stat_figures.pairwise_matrix(figure("pairwise_matrix"), names, stats["pairs"])
    stat_figures.performance_profile(figure("performance_profile"), times["profiles"], names)
    curves = [sections.curve_series(best_points[row["name"]], row, metrics) for row in rows]
    figures.learning_curves(figure("learning_curves"), [series for series in curves if series["epochs"]])
    figures.accuracy_bars(
        figure("test_accuracy"),
        names,
        [row["test_accuracy_mean"] for row in rows],
        [row["test_accuracy_std"] for row in rows],
    )
    sensitivity = sensitivity_lines(grid, best_points, tuning)
    if any(len(line["learning_rates"]) > 1 for line in sensitivity):
        figures.lr_sensitivity(figure("lr_sensitivity"), sensitivity)
    sample_rows = range(min(SAMPLE_IMAGES, len(labels)))
    figures.image_grid(
        figure("test_samples"), images[list(sample_rows)], [CLASS_NAMES[labels[row]] for row in sample_rows]
    )
    best = comparison.best_run(results)
    best_context = sections.best_run_context(best, images, figure) if best is not None else None
    extras = []
    for index, (heading, given) in enumerate(extra_figures, start=1):
        source = Path(given)
        if not source.is_file():
            raise ReportError(f"extra figure {heading!r}: {source} not found; write it before building the report")
        target = figure(f"extra-{index}-{slug(heading)}")
        write_bytes_atomic(target, source.read_bytes())
        extras.append({"title": heading, "path": f"{FIGURES}/{target.name}"})

    # A rebuild into the same dated folder (config edited the same day) must not leave figures of the old
    # report lying beside the new one; the folder is ours, and only its PNGs are touched.
    for stale in set((out_dir / FIGURES).glob("*.png")) - set(written.values()):
        stale.unlink(missing_ok=True)
    crash_point("report.figures-written")

    summary_path = out_dir / "summary.parquet"
    with atomic_path(summary_path, suffix=".parquet") as temp:
        pq.write_table(summary, temp)

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
        "metadata": sections.metadata(results),
        "sgd_present": any(row["overhead_vs_sgd"] is not None for row in rows),
        "class_names": CLASS_NAMES,
        "statistics": stats,
        "names": names,
        "time_to_target": times,
        "anchors": anchors,
        "sensitivity": [line for line in sensitivity if len(line["learning_rates"]) > 1],
    }
    markdown_path, html_path = out_dir / "report.md", out_dir / "report.html"
    for path, template in ((markdown_path, "report.md.j2"), (html_path, "report.html.j2")):
        text = render(template, context)
        with atomic_open(path, "w") as handle:
            handle.write(text)
    return {
        "html": html_path,
        "markdown": markdown_path,
        "summary": summary_path,
        "figures": list(written.values()),
        "table": rows,
        "statistics": stats,
        "equivalence_margin": equivalence_margin,
        "time_to_target": times,
        "anchors": anchors,
    }
