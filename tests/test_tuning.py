"""Learning-rate tuning inside the DAG: the grid on the tuning seeds, the choice on validation, then the
chosen point on every seed, all in one FullReport; a rerun is a no-op."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import luigi.configuration
import pyarrow.parquet as pq
import pytest
import yaml

from pipeline import ExperimentReport, FullReport, TunedRuns, TuneLearningRate
from tasks.core.config import parse_config
from tasks.core.errors import ConfigError
from tasks.core.layout import Layout
from tasks.core.runfolder import RunFolder
from tasks.core.runs import expand_runs, final_specs, grid_specs
from tasks.core.selection import final_scores, selection_stability
from tests.conftest import REPO_ROOT, build, site_cfg_beside
from tests.killcheck import EPOCHS, assert_resumed_where_killed, resume_points

SMOKE = yaml.safe_load((REPO_ROOT / "configs" / "smoke.yaml").read_text())
GRID = [0.003, 0.3]


def _tuned_config(tmp_path: Path) -> Path:
    raw = dict(SMOKE, experiment="tuned", seeds=[0, 1, 2], tuning_seeds=[0, 1])
    raw["training"] = {"epochs": 1, "batch_size": 64}
    raw["optimizers"] = [{"name": "sgd", "learning_rate": GRID}, {"name": "adam", "learning_rate": 0.001}]
    path = tmp_path / "tuned.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_the_config_says_which_entries_are_tuned_and_on_which_seeds():
    raw = dict(SMOKE, seeds=[0, 1, 2], tuning_seeds=[0, 1])
    raw["optimizers"] = [{"name": "sgd", "learning_rate": GRID}, {"name": "adam", "learning_rate": 0.001}]
    config = parse_config(raw)
    grid = grid_specs(config, config.optimizers[0])
    assert [(spec.learning_rate, spec.seed) for spec in grid] == [(0.003, 0), (0.003, 1), (0.3, 0), (0.3, 1)]
    assert [spec.name for spec in final_specs(config)] == ["adam"] * 3  # before tuning: the untuned only
    chosen = final_specs(config, {"sgd": 0.3})
    assert [(spec.name, spec.learning_rate) for spec in chosen] == [("sgd", 0.3)] * 3 + [("adam", 0.001)] * 3
    with pytest.raises(ConfigError, match="not in its grid"):
        final_specs(config, {"sgd": 0.1})
    with pytest.raises(ConfigError, match="tunes"):
        expand_runs(config)
    for bad, message in (([0], "at least 2"), ([0, 1, 2], "fewer than"), ([0, 0], "listed twice")):
        with pytest.raises(ConfigError, match=message):
            parse_config(dict(raw, tuning_seeds=bad))


def test_full_report_tunes_then_runs_the_chosen_rate_on_every_seed(site, ran_tasks, tmp_path):
    config_path = _tuned_config(tmp_path)
    day = dt.date(2026, 2, 1)
    build([FullReport(config=str(config_path), date=day)], workers=1)
    trained = [(task.name, task.learning_rate, task.seed) for task in ran_tasks.tasks if task.task_family == "TrainRun"]
    grid = {("sgd", rate, seed) for rate in GRID for seed in (0, 1)}
    assert grid <= set(trained)

    # The choice is the best mean final validation accuracy over the tuning seeds, recomputed here.
    config = parse_config(yaml.safe_load(config_path.read_text()))
    layout = Layout(site)
    mean_val = {}
    for rate in GRID:
        specs = [s for s in grid_specs(config, config.optimizers[0]) if s.learning_rate == rate]
        mean_val[rate] = (
            sum(RunFolder(layout.run_dir(s), s.run_hash, s.seed).metrics()["val_accuracy"][-1] for s in specs) / 2
        )
    assert mean_val[GRID[0]] != mean_val[GRID[1]]
    chosen = max(GRID, key=lambda rate: (mean_val[rate], -rate))
    (tune,) = [task for task in ran_tasks.tasks if isinstance(task, TuneLearningRate)][:1]
    record = json.loads(Path(tune.output().path).read_text())
    assert record["chosen_learning_rate"] == chosen and record["tuning_seeds"] == [0, 1]

    # Then only the chosen point runs on the third seed, and only final runs are evaluated: the test set
    # is never read for the grid point that lost.
    assert set(trained) == grid | {("sgd", chosen, 2), ("adam", 0.001, 0), ("adam", 0.001, 1), ("adam", 0.001, 2)}
    loser = next(rate for rate in GRID if rate != chosen)
    for spec in grid_specs(config, config.optimizers[0]):
        assert (layout.run_dir(spec) / "evaluation.json").exists() == (spec.learning_rate == chosen)
    summary = pq.read_table(site / "reports" / "tuned" / day.isoformat() / "summary.parquet").to_pylist()
    assert sorted((row["name"], row["seed"]) for row in summary) == [(n, s) for n in ("adam", "sgd") for s in (0, 1, 2)]
    assert loser not in {row["learning_rate"] for row in summary if row["name"] == "sgd"}
    # report.json, written last by the pipeline, carries the numbers under stable keys, and the tuning.
    report = json.loads((site / "reports" / "tuned" / day.isoformat() / "report.json").read_text())
    assert {"table", "statistics", "time_to_target", "anchors", "tuning", "config_hash", "html"} <= set(report)
    assert report["tuning"] == {"sgd": record}
    assert set(report["statistics"]["optimizers"]) == {"sgd", "adam"} and len(report["statistics"]["pairs"]) == 1
    # The reader is told how far the choice can be trusted: its stability over resampled tuning seeds, and
    # whether it sits at an edge of its grid.
    html = (site / "reports" / "tuned" / day.isoformat() / "report.html").read_text().lower()
    stability = selection_stability(final_scores(record))
    assert f"selection stability {stability:.2f}" in html
    assert ("at an edge of the grid" in html) == (chosen in (min(GRID), max(GRID)))

    ran_tasks.tasks.clear()
    build([FullReport(config=str(config_path), date=day)])
    assert ran_tasks.tasks == [], "a finished tuned experiment reruns nothing"


def test_a_kill_during_tuning_then_a_rerun_gives_the_same_choice_and_numbers(site, tmp_path):
    raw = dict(SMOKE, experiment="tuned", seeds=[0, 1, 2], tuning_seeds=[0, 1])
    raw["training"] = {"epochs": EPOCHS, "batch_size": 64}
    raw["optimizers"] = [{"name": "sgd", "learning_rate": GRID}]
    config_path = tmp_path / "only-tuned.yaml"
    config_path.write_text(yaml.safe_dump(raw))
    day = dt.date(2026, 2, 2)
    build([FullReport(config=str(config_path), date=day)])  # the uninterrupted reference, in `site`

    root = tmp_path / "killed"
    cfg = tmp_path / "killed.cfg"
    site_cfg_beside(root, cfg)
    command = [sys.executable, "-m", "luigi", "--module", "pipeline", "FullReport", "--config", str(config_path)]
    command += ["--date", day.isoformat(), "--workers", "1"]
    env = {**os.environ, "LUIGI_CONFIG_PATH": str(cfg)}
    # A tuned entry alone: the first runs to train are its grid runs, one chunk per epoch, so hit 4 of
    # train.mid-epoch is the second grid run's epoch 2, after its epoch-1 checkpoint: mid-tuning.
    killed = subprocess.run(command, cwd=REPO_ROOT, env={**env, "FMNIST_CRASH_AT": "train.mid-epoch:4"}, timeout=300)
    assert killed.returncode == -signal.SIGKILL and not list(root.glob("tuning/*/*.json"))
    points = resume_points(root)
    assert sorted(points.values(), key=str) == [1, None], points  # one grid run done, one killed in epoch 2
    rerun = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert_resumed_where_killed(root, points)  # the killed run ran epoch 2 only; the finished one was kept

    def outcome(artifacts: Path) -> tuple[list, dict]:
        records = [json.loads(p.read_text()) for p in sorted(artifacts.glob("tuning/tuned/*.json"))]
        report = json.loads((artifacts / "reports" / "tuned" / day.isoformat() / "report.json").read_text())
        return [(r["entry"], r["chosen_learning_rate"], r["grid"]) for r in records], report["statistics"]

    assert outcome(root) == outcome(site)


def test_an_entrys_final_runs_wait_for_its_own_tuning_only(site, ran_tasks, tmp_path):
    """TunedRuns(entry) needs that entry's tuning alone: its final runs can start while others still tune."""
    config_path = _tuned_config(tmp_path)
    raw = yaml.safe_load(config_path.read_text())
    raw["optimizers"][1]["learning_rate"] = [0.0003, 0.001]  # adam is tuned too now
    config_path.write_text(yaml.safe_dump(raw))
    build([TunedRuns(config=str(config_path), name="sgd")], workers=1)
    trained = {(task.name, task.seed) for task in ran_tasks.tasks if task.task_family == "TrainRun"}
    assert trained == {("sgd", 0), ("sgd", 1), ("sgd", 2)}, "only sgd's grid and its chosen rate on seed 2"
    assert not [task for task in ran_tasks.tasks if getattr(task, "name", "") == "adam"]
    evaluated = sorted(task.seed for task in ran_tasks.tasks if task.task_family == "EvaluateRun")
    assert evaluated == [0, 1, 2]
    assert TunedRuns(config=str(config_path), name="sgd").complete()
    assert not TunedRuns(config=str(config_path), name="adam").complete()
    # The report asks for each tuned entry's TunedRuns, so the scheduler sees them before the report runs.
    report = ExperimentReport(config=str(config_path), date=dt.date(2026, 2, 1))
    assert {task for task in luigi.task.flatten(report.requires()) if isinstance(task, TunedRuns)} == {
        TunedRuns(config=str(config_path), name="sgd"),
        TunedRuns(config=str(config_path), name="adam"),
    }


def _quarantined_reasons(record_path: Path) -> list[str]:
    return sorted(path.read_text() for path in (record_path.parent / "quarantine").glob("*.reason.txt"))


def test_a_tampered_tuning_record_is_quarantined_and_the_choice_made_again_without_training(site, ran_tasks, tmp_path):
    """Red team 7a and 8: a record edited to the losing point, or naming a rate outside its grid, is never
    believed; each rerun moves it to quarantine, saying why, and rechooses from the finished grid runs."""
    config_path = _tuned_config(tmp_path)
    tune = TuneLearningRate(config=str(config_path), name="sgd")
    build([tune], workers=1)
    path = Path(tune.output().path)
    original = json.loads(path.read_text())
    loser = next(rate for rate in GRID if rate != original["chosen_learning_rate"])

    worse = dict(original, chosen_learning_rate=loser)
    path.write_text(json.dumps(worse))
    assert not tune.complete()
    ran_tasks.tasks.clear()
    build([tune], workers=1)
    assert [task.task_family for task in ran_tasks.tasks] == ["TuneLearningRate"]  # no grid run trains again
    assert json.loads(path.read_text()) == original
    (reason,) = _quarantined_reasons(path)
    assert f"chose {loser!r}, but the rule" in reason and "the grid's choice was made again" in reason

    outside = json.loads(json.dumps(original))
    outside["grid"][0]["learning_rate"] = 0.03  # not a point of the config's grid [0.003, 0.3]
    path.write_text(json.dumps(outside))
    assert not tune.complete()
    build([tune], workers=1)
    assert json.loads(path.read_text()) == original and tune.complete()
    reasons = _quarantined_reasons(path)
    assert len(reasons) == 2 and any("covers the learning rates" in text and "not the grid" in text for text in reasons)
