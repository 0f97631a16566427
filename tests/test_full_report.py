"""FullReport end to end: smoke.yaml on synthetic data in-process, and on the real files from the CLI."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml
from PIL import Image

from pipeline import FullReport
from tasks.core.config import load_config
from tasks.core.layout import Layout
from tasks.core.runs import expand_runs
from tests.conftest import REAL_DATA_DIR, REPO_ROOT, build

SMOKE = REPO_ROOT / "configs" / "smoke.yaml"


def _report_dir(root: Path, date: str = "2026-01-02") -> Path:
    return root / "reports" / "smoke" / date


def _assert_report_is_complete(report_dir: Path, config_path: Path, root: Path) -> None:
    for name in ("report.html", "report.md", "summary.parquet", "report.json"):
        assert (report_dir / name).is_file(), name
    figures = sorted((report_dir / "figures").glob("*.png"))
    assert len(figures) >= 5, figures
    for figure in figures:
        with Image.open(figure) as image:
            assert image.format == "PNG" and image.width >= 200 and image.height >= 150, figure
        assert figure.stat().st_size > 5000, figure
    html = (report_dir / "report.html").read_text()
    for figure in figures:
        assert f"figures/{figure.name}" in html, figure

    # The table's numbers are the evaluation.json numbers (one seed here: mean = that run's value).
    config = load_config(config_path)
    layout = Layout(root)
    table = {row["name"]: row for row in json.loads((report_dir / "report.json").read_text())["table"]}
    summary = pq.read_table(report_dir / "summary.parquet").to_pylist()
    assert len(summary) == len(expand_runs(config))
    for spec in expand_runs(config):
        evaluation = json.loads((layout.run_dir(spec) / "evaluation.json").read_text())
        assert evaluation["status"] == "completed"
        accuracy = evaluation["test"]["accuracy"]
        assert table[spec.name]["test_accuracy_mean"] == pytest.approx(accuracy, abs=1e-12)
        row = next(r for r in summary if r["name"] == spec.name and r["seed"] == spec.seed)
        assert row["test_accuracy"] == pytest.approx(accuracy, abs=1e-12)
        assert f"{accuracy:.4f}" in html


def test_full_report_on_smoke_then_rerun_then_edit_one_learning_rate(site, ran_tasks, tmp_path):
    import datetime as dt

    date = dt.date(2026, 1, 2)
    # One config file, edited in place below: a second file with the same `experiment:` name is refused.
    edited = tmp_path / "smoke.yaml"
    edited.write_text(SMOKE.read_text())
    build([FullReport(config=str(edited), date=date)])
    families = ran_tasks.families()
    assert families.count("TrainRun") == 5 and families.count("EvaluateRun") == 5
    assert families.count("ExperimentReport") == 1
    _assert_report_is_complete(_report_dir(site), edited, site)

    ran_tasks.tasks.clear()
    build([FullReport(config=str(edited), date=date)])
    assert ran_tasks.tasks == [], "a rerun on finished artifacts must run no task"

    # Red team 9: with report.html or a figure gone, FullReport rebuilds the report (and only the report).
    for victim in ("report.html", "figures/forest_plot.png"):
        (_report_dir(site) / victim).unlink()
        build([FullReport(config=str(edited), date=date)])
        assert sorted(ran_tasks.families()) == ["ExperimentReport", "FullReport"], victim
        assert (_report_dir(site) / victim).is_file()
        ran_tasks.tasks.clear()

    raw = yaml.safe_load(SMOKE.read_text())
    for entry in raw["optimizers"]:
        if entry["name"] == "adam":
            entry["learning_rate"] = 0.002
    edited.write_text(yaml.safe_dump(raw))
    ran_tasks.tasks.clear()
    build([FullReport(config=str(edited), date=date)])
    ran = sorted((task.task_family, getattr(task, "name", None)) for task in ran_tasks.tasks)
    assert ran == [("EvaluateRun", "adam"), ("ExperimentReport", None), ("FullReport", None), ("TrainRun", "adam")]
    _assert_report_is_complete(_report_dir(site), edited, site)


# What TensorFlow's native start-up prints on a CPU-only machine unless tasks.training.tf1 filters it.
START_UP_NOISE = ("absl::InitializeLog", "cuda drivers", "cuInit", "oneDNN custom operations", "cudart_stub")


@pytest.mark.realdata
@pytest.mark.skipif(not REAL_DATA_DIR.is_dir(), reason="the Debian package dataset-fashion-mnist is not installed")
def test_full_report_cli_on_the_real_data(tmp_path):
    """The real files, the real command line, a quiet console: smoke.yaml cut to one optimizer and epoch."""
    root = tmp_path / "artifacts"
    cfg = tmp_path / "site.cfg"
    cfg.write_text(f"[pipeline]\nartifacts_root = {root}\nsources = {json.dumps([str(REAL_DATA_DIR)])}\n")
    raw = yaml.safe_load(SMOKE.read_text())
    raw["training"]["epochs"] = 1
    raw["optimizers"] = [entry for entry in raw["optimizers"] if entry["name"] == "adam"]
    config = tmp_path / "smoke.yaml"
    config.write_text(yaml.safe_dump(raw))
    env = {key: value for key, value in os.environ.items() if not key.startswith("TF_CPP")}
    env["LUIGI_CONFIG_PATH"] = str(cfg)
    command = [
        sys.executable,
        "-m",
        "luigi",
        "--module",
        "pipeline",
        "FullReport",
        "--config",
        str(config),
        "--date",
        "2026-01-02",
    ]
    done = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-4000:]
    noise = [line for line in (done.stdout + done.stderr).splitlines() if any(n in line for n in START_UP_NOISE)]
    assert noise == []
    assert "TrainRun(name=adam, run_hash=" in done.stderr  # the execution summary names what ran, briefly
    # Not a terminal: one progress line per epoch, naming the run.
    assert re.search(r"mlp-adam-\w{10}/seed-0: epoch 1/1 · val_acc 0\.\d{3} · [\d,]+ ex/s", done.stderr)
    _assert_report_is_complete(_report_dir(root), config, root)
    summary = pq.read_table(_report_dir(root) / "summary.parquet").to_pylist()
    accuracies = {row["name"]: row["test_accuracy"] for row in summary}
    # One epoch of a 32-unit MLP on the real data: far above chance (0.1).
    assert accuracies["adam"] > 0.7, accuracies

    where = subprocess.run(
        [sys.executable, "-m", "pipeline.where", "report", "--config", str(config), "--date", "2026-01-02"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    assert where.returncode == 0 and where.stdout.strip().endswith("reports/smoke/2026-01-02/report.html")

    again = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0
    assert "complete ones were encountered" in again.stdout + again.stderr
    assert "ran successfully" not in again.stdout + again.stderr
