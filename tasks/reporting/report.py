"""The optimizer-comparison report: a self-contained folder of HTML, Markdown, PNGs and a Parquet summary.

Numbers come from tasks.reporting.comparison (evaluation.json) and from each run's metrics.parquet. The
statistics (tasks.reporting.statistics) and times to target (tasks.reporting.targets) are computed from
the very rows written to summary.parquet, so anyone can recompute them from that file alone. This module
only arranges: figures, the two templates, and atomic writes. report.json, written last by
`publish_report` after everything it vouches for, marks the folder complete.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from tasks.core.errors import DataError, ReportError
from tasks.core.faults import crash_point
from tasks.core.runs import RunOnDisk
from tasks.core.storage import (
    atomic_open,
    atomic_path,
    ensure_dir,
    read_json,
    remove_stale_files,
    sha256_file,
    write_bytes_atomic,
    write_json_atomic,
)
from tasks.data.arrays import load_arrays
from tasks.data.dataset import CLASS_NAMES
from tasks.reporting import comparison, figures, sections, seedplan, stat_figures, statistics
from tasks.reporting.anchors import anchor_rows
from tasks.reporting.render import render, slug
from tasks.reporting.sensitivity import check_tuning, sensitivity_lines
from tasks.reporting.targets import DEFAULT_TARGETS, check_targets, summarize, time_to_targets

FIGURES = "figures"
SAMPLE_IMAGES = 25
REPORT_JSON = "report.json"
# What report.json carries from build_report's result, under stable keys.
# report.json's {path relative to the folder: sha256} of every file it vouches for.
FILES_KEY = "files"
REPORT_JSON_KEYS = ("table", "statistics", "equivalence_margin", "time_to_target", "anchors")


@dataclass(frozen=True)
class ReportInputs:
    """Everything a report is built from: what it is about, the runs, and what to show beside them."""

    experiment: str
    title: str
    date: str
    config_hash: str
    config_text: str
    runs: Sequence[RunOnDisk]
    test_arrow: Path
    alerts: Sequence[str] = ()
    extra_figures: Sequence[tuple[str, Path]] = ()
    targets: Sequence[float] = DEFAULT_TARGETS
    tuning: Mapping[str, Any] | None = None
    # For tasks.reporting.statistics: the practical margin, whether the validation split varies with the
    # seed, and the seed plan of an adaptive design. Per-example test correctness comes from each run's
    # predictions.parquet (read through its RunFolder), so every interval includes the test sample.
    equivalence_margin: float = statistics.EQUIVALENCE_MARGIN
    split_varies: bool = False
    seed_plan: Mapping[str, Any] | None = None


@dataclass
class _Numbers:
    """The report's numbers, each computed once from the runs."""

    compared: comparison.Comparison
    metrics: dict
    summary: Any  # the summary.parquet table
    stats: dict[str, Any]
    times: dict[str, Any]
    anchors: list
    sensitivity: list
    tuning: dict

    @property
    def names(self) -> list[str]:
        return [row["name"] for row in self.compared.rows]


def publish_report(out_dir: Path, record: dict[str, Any], inputs: ReportInputs) -> dict[str, Any]:
    """Build the report, then write report.json (its completion marker) last, holding `record` too.

    A report with alerts is written without report.json: it is shown, but not marked done.
    """
    result = build_report(out_dir, inputs)
    if not inputs.alerts:
        summary = {key: result[key] for key in REPORT_JSON_KEYS if key in result}
        files = [result["html"], result["markdown"], result["summary"], *result["figures"]]
        hashes = {Path(path).relative_to(out_dir).as_posix(): sha256_file(path) for path in files}
        write_json_atomic(
            Path(out_dir) / REPORT_JSON, {**record, "html": str(result["html"]), FILES_KEY: hashes, **summary}
        )
    return result


def report_problem(out_dir: Path, config_hash: str) -> str | None:
    """Why `out_dir` holds no finished report of the config with this hash, or None when it does.

    Finished: report.json readable, of this config hash, and every file it vouches for present with the
    sha256 it records (a deleted report.html or figure makes the report build again). A report.json written
    before the hashes were recorded vouches for report.html only.
    """
    record_path = Path(out_dir) / REPORT_JSON
    try:
        record = read_json(record_path)
    except FileNotFoundError:
        return f"{record_path} not found"
    except (OSError, ValueError) as exc:
        return f"{record_path} is not readable JSON ({exc})"
    if not isinstance(record, dict) or record.get("config_hash") != config_hash:
        found = record.get("config_hash") if isinstance(record, dict) else type(record).__name__
        return f"{record_path}: expected the report of config hash {config_hash}, found {found!r}"
    files = record.get(FILES_KEY, {"report.html": None})
    if not isinstance(files, dict):
        return f"{record_path}: {FILES_KEY!r} is {type(files).__name__}, expected an object of file: sha256"
    for name, expected in files.items():
        path = Path(out_dir) / name
        if not isinstance(name, str) or not path.resolve().is_relative_to(Path(out_dir).resolve()):
            return f"{record_path} names {name!r}, outside the report folder {out_dir}"
        if not path.is_file():
            return f"{path} not found"
        if expected is not None and sha256_file(path) != expected:
            return f"{path}: sha256 differs from the {expected} that {REPORT_JSON} records (edited or damaged)"
    return None


def plan_seeds(runs: Sequence[RunOnDisk], test_arrow: Path, *, margin: float, max_seeds: int) -> dict[str, Any]:
    """The seed plan of an adaptive comparison from its pilot runs (tasks.reporting.seedplan), on the same
    summary rows and per-example correctness the report reads."""
    try:
        _, labels = load_arrays(test_arrow)
    except DataError as exc:
        raise ReportError(f"cannot read the test labels for the seed plan: {exc}") from None
    compared = comparison.compare(runs)
    rows = comparison.summary_table(compared.results).to_pylist()
    correctness = sections.correctness(compared.results, labels)
    return seedplan.seed_plan(rows, margin=margin, max_seeds=max_seeds, correctness=correctness)


def build_report(out_dir: Path, inputs: ReportInputs) -> dict[str, Any]:
    """Write report.html, report.md, figures/*.png and summary.parquet into `out_dir` (report.html last).

    Returns their paths, the results table, and the "statistics", "equivalence_margin", "time_to_target"
    and "anchors" blocks (plain JSON data) for report.json.
    """
    if not inputs.runs:
        raise ReportError(f"{out_dir}: no runs to report; the config must name at least one run")
    try:
        images, labels = load_arrays(inputs.test_arrow)
    except DataError as exc:
        raise ReportError(f"cannot read the test images for the report: {exc}") from None
    numbers = _numbers(inputs, labels)
    out_dir = ensure_dir(out_dir)
    ensure_dir(out_dir / FIGURES)
    written, best_context, extras = _figures(out_dir, inputs, numbers, images, labels)
    summary_path = out_dir / "summary.parquet"
    with atomic_path(summary_path, suffix=".parquet") as temp:
        pq.write_table(numbers.summary, temp)
    context = _context(inputs, numbers, written, best_context, extras)
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
        "table": numbers.compared.rows,
        "statistics": numbers.stats,
        "equivalence_margin": inputs.equivalence_margin,
        "time_to_target": numbers.times,
        "anchors": numbers.anchors,
    }


def _numbers(inputs: ReportInputs, labels: np.ndarray) -> _Numbers:
    """Compare the runs, then compute statistics and times to target from the summary rows (and each chosen
    run's per-example correctness on the test labels)."""
    targets = check_targets(inputs.targets)
    compared = comparison.compare(inputs.runs)
    tuning = check_tuning(inputs.tuning, compared.best_points)
    metrics = sections.run_metrics(compared.results)
    for result in compared.results:
        result.time_to_target = time_to_targets(metrics[result.run_dir], targets)
    summary = comparison.summary_table(compared.results, targets)
    summary_rows = summary.to_pylist()
    stats = statistics.compute(
        summary_rows,
        margin=inputs.equivalence_margin,
        correctness=sections.correctness(compared.results, labels),
        split_varies=inputs.split_varies,
        plan=inputs.seed_plan,
    )
    names = [row["name"] for row in compared.rows]
    anchors = anchor_rows(
        sections.experiment_settings(compared.results),
        [(row["name"], row["optimizer"]) for row in compared.rows],
        {name: stats["optimizers"][name]["mean"] for name in names},
        stats["pairs"],
    )
    sensitivity = sensitivity_lines(compared.grid, compared.best_points, tuning)
    return _Numbers(compared, metrics, summary, stats, summarize(summary_rows, targets), anchors, sensitivity, tuning)


def _figures(out_dir: Path, inputs: ReportInputs, numbers: _Numbers, images, labels) -> tuple[dict, Any, list]:
    """Draw every figure into figures/ (and remove an earlier report's leftovers); (paths, best run, extras)."""
    written: dict[str, Path] = {}

    def figure(name: str) -> Path:
        written[name] = out_dir / FIGURES / f"{name}.png"
        return written[name]

    names, stats, rows = numbers.names, numbers.stats, numbers.compared.rows
    stat_figures.forest_plot(figure("forest_plot"), names, stats["optimizers"])
    if len(names) > 1:
        stat_figures.pairwise_matrix(figure("pairwise_matrix"), names, stats["pairs"])
    stat_figures.performance_profile(figure("performance_profile"), numbers.times["profiles"], names)
    best_points = numbers.compared.best_points
    curves = [sections.curve_series(best_points[row["name"]], row, numbers.metrics) for row in rows]
    figures.learning_curves(figure("learning_curves"), [series for series in curves if series["epochs"]])
    figures.accuracy_bars(
        figure("test_accuracy"),
        names,
        [row["test_accuracy_mean"] for row in rows],
        [row["test_accuracy_std"] for row in rows],
    )
    if any(len(line["learning_rates"]) > 1 for line in numbers.sensitivity):
        figures.lr_sensitivity(figure("lr_sensitivity"), numbers.sensitivity)
    sample_rows = range(min(SAMPLE_IMAGES, len(labels)))
    figures.image_grid(
        figure("test_samples"), images[list(sample_rows)], [CLASS_NAMES[labels[row]] for row in sample_rows]
    )
    best = comparison.best_run(numbers.compared.results)
    best_context = sections.best_run_context(best, images, figure) if best is not None else None
    extras = []
    for index, (heading, given) in enumerate(inputs.extra_figures, start=1):
        source = Path(given)
        if not source.is_file():
            raise ReportError(f"extra figure {heading!r}: {source} not found; write it before building the report")
        target = figure(f"extra-{index}-{slug(heading)}")
        write_bytes_atomic(target, source.read_bytes())
        extras.append({"title": heading, "path": f"{FIGURES}/{target.name}"})
    # A rebuild into the same dated folder (config edited the same day) must not leave figures of the old
    # report lying beside the new one; only plain PNGs of ours are touched (no link, no writer's temp file).
    remove_stale_files(out_dir / FIGURES, set(written.values()), ".png")
    crash_point("report.figures-written")
    return written, best_context, extras


def _context(inputs: ReportInputs, numbers: _Numbers, written: dict, best_context: Any, extras: list) -> dict:
    """What the two templates render."""
    rows, results = numbers.compared.rows, numbers.compared.results
    return {
        "title": inputs.title,
        "experiment": inputs.experiment,
        "date": inputs.date,
        "config_hash": inputs.config_hash,
        "config_text": inputs.config_text,
        "alerts": list(inputs.alerts),
        "rows": rows,
        "runs": results,
        "figures": {name: f"{FIGURES}/{path.name}" for name, path in written.items()},
        "best": best_context,
        "extras": extras,
        "metadata": sections.metadata(results),
        "sgd_present": any(row["overhead_vs_sgd"] is not None for row in rows),
        "class_names": CLASS_NAMES,
        "statistics": numbers.stats,
        "names": numbers.names,
        "time_to_target": numbers.times,
        "anchors": numbers.anchors,
        "sensitivity": [line for line in numbers.sensitivity if len(line["learning_rates"]) > 1],
    }
