"""Successive halving, edge extension and selection stability: the rule's pieces, then one tuned grid in the DAG."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import yaml

from pipeline import TuneLearningRate
from pipeline.plan import main as plan_main
from tasks.core.selection import GridScore, beyond_edge, check_tuning_record, halve, selection_stability
from tasks.reporting.sensitivity import tuning_notes
from tasks.training.cost import halving_epochs
from tests.conftest import REPO_ROOT, build, site_cfg_beside

SMOKE = yaml.safe_load((REPO_ROOT / "configs" / "smoke.yaml").read_text())


def test_halving_keeps_the_best_third_and_extension_steps_at_the_edge_spacing():
    points = [GridScore(0.01, (0.5, 0.6)), GridScore(0.1, (0.8, 0.7)), GridScore(1.0, (None, 0.9))]
    assert halve(points, 0.333) == [1]  # the diverged seed ranks last, whatever its other seed did
    assert halve(points, 0.5) == [0, 1]
    assert beyond_edge([0.001, 0.003], True) == 0.009 and beyond_edge([0.001, 0.003], False) == 0.000333333333333


def test_selection_stability_counts_resamplings_that_keep_the_choice():
    clear = [GridScore(0.01, (0.5, 0.6)), GridScore(0.1, (0.8, 0.7))]
    assert selection_stability(clear) == 1.0
    # Seed 0 prefers 0.1, seed 1 prefers 0.01: of the 4 resamplings (0,0) (0,1) (1,0) (1,1), 3 keep 0.1.
    split = [GridScore(0.01, (0.5, 0.9)), GridScore(0.1, (0.8, 0.7))]
    assert selection_stability(split) == 0.75


def test_the_report_says_stability_with_a_warning_extension_and_what_halving_changed():
    split = [GridScore(0.01, (0.5, 0.9)), GridScore(0.1, (0.8, 0.7)), GridScore(0.3, (0.4, 0.4))]
    line = {
        "stability": selection_stability(split[:2]),
        "learning_rates": [0.01, 0.1, 0.3],
        "chosen_learning_rate": 0.1,
        "stopped": {0.3: 1},
        "full_tuning_choice": 0.01,
    }
    record = {
        "tuning_seeds": [0, 1],
        "extended": [0.3],
        "extend_cap": 1,
        "at_edge": False,
        "halving": {"rungs": [1], "keep": 0.5},
    }
    notes = tuning_notes(record, line)
    assert notes == [
        "Warning: selection stability 0.75, below 0.8: resampling tuning seeds 0, 1 with replacement picks this "
        "point only 75% of the time; the choice is not settled.",
        "Grid extended beyond its edge by 0.3 (1 of at most 1).",
        "Successive halving (rungs at epochs 1, keep 0.5) stopped 1 of 3 points early (shown at their validation "
        "accuracy where they stopped).",
        "Full tuning (no halving) chooses 0.01 instead.",
    ]
    # A record from before extension and halving existed: stability still shown, nothing else claimed.
    old = tuning_notes({"tuning_seeds": [0, 1]}, dict(line, stability=1.0, full_tuning_choice=0.1))
    assert old[0].startswith("Selection stability 1.00: ") and old[1:] == ["Grid extension off (tuning.extend is 0)."]
    inside = tuning_notes(dict(record, extended=[], halving=None), dict(line, stability=1.0))
    assert inside[1:] == ["Grid not extended: the choice lies inside the written grid (up to 1 allowed)."]
    edge = tuning_notes({"tuning_seeds": [0, 1]}, dict(line, stability=1.0, chosen_learning_rate=0.3))
    assert edge[1:] == [
        "Grid extension off (tuning.extend is 0).",
        "The choice still lies at an edge of the grid: the best rate may lie outside it.",
    ]


def test_a_record_at_an_edge_with_extensions_left_is_not_believed():
    record = {
        "tuning_seeds": [0, 1],
        "rule": "r",
        "chosen_learning_rate": 0.1,
        "grid": [
            {"learning_rate": r, "val_accuracies": v, "mean_val_accuracy": 0, "std_val_accuracy": 0}
            for r, v in ((0.01, [0.5, 0.5]), (0.1, [0.8, 0.8]))
        ],
    }
    assert check_tuning_record(record, [0.01, 0.1]) is None
    assert "extend it" in check_tuning_record(record, [0.01, 0.1], extend=1)


def test_a_halving_record_whose_race_does_not_chain_is_not_believed():
    def point(rate, accuracies, stop):
        return {"learning_rate": rate, "val_accuracies": accuracies, "mean_val_accuracy": 0, "std_val_accuracy": 0,
                "stopped_at_epoch": stop}  # fmt: skip

    halving = {"rungs": [1, 2], "keep": 0.5}
    record = {
        "tuning_seeds": [0, 1],
        "rule": "r",
        "chosen_learning_rate": 0.1,
        "grid": [point(0.01, [0.5, 0.5], 1), point(0.1, [0.8, 0.8], None), point(1.0, [0.7, 0.7], 2)],
        "rungs": [
            {
                "epoch": 1,
                "val_accuracies": {"0.01": [0.4, 0.4], "0.1": [0.6, 0.6], "1.0": [0.5, 0.5]},
                "kept": [0.1, 1.0],
            },
            {"epoch": 2, "val_accuracies": {"0.1": [0.7, 0.7], "1.0": [0.6, 0.6]}, "kept": [0.1]},
        ],
    }
    grid = [0.01, 0.1, 1.0]
    assert check_tuning_record(record, grid, halving=halving) is None
    raced_again = json.loads(json.dumps(record))
    raced_again["rungs"][1]["val_accuracies"]["0.01"] = [0.9, 0.9]  # a point cut at epoch 1 back in the race
    assert "but the points still in the race were [0.1, 1.0]" in check_tuning_record(raced_again, grid, halving=halving)
    wrong_stop = json.loads(json.dumps(record))
    wrong_stop["grid"][2]["stopped_at_epoch"] = 1
    assert "stopped_at_epoch says otherwise" in check_tuning_record(wrong_stop, grid, halving=halving)
    not_cut = json.loads(json.dumps(record))
    not_cut["grid"][2]["stopped_at_epoch"] = None  # a cut point claims to have trained all epochs
    assert "stopped_at_epoch says otherwise" in check_tuning_record(not_cut, grid, halving=halving)
    survivor_stopped = json.loads(json.dumps(record))
    survivor_stopped["grid"][1]["stopped_at_epoch"] = 2  # the last survivor claims it stopped
    assert "the last rung kept [0.1]" in check_tuning_record(survivor_stopped, grid, halving=halving)


def test_the_cost_model_counts_the_epochs_halving_trains():
    # dissecting-adam: 3 points to epoch 3, the best one on to 15: (3×3 + 12) / 3 = 7 epochs per point.
    assert halving_epochs(3, [3], 0.333, 15) == 7.0
    # An extended grid of 4 keeps ceil(0.333 × 4) = 2: (4×3 + 2×12) / 4.
    assert halving_epochs(4, [3], 0.333, 15) == 9.0
    assert halving_epochs(9, [2, 6], 0.333, 10) == (9 * 2 + 3 * 4 + 1 * 4) / 9


def test_halving_and_extension_in_the_dag(site, ran_tasks, tmp_path, capsys):
    raw = dict(SMOKE, experiment="halved", seeds=[0, 1, 2], tuning_seeds=[0, 1])
    raw["tuning"] = {"extend": 1, "halving": {"rungs": [1], "keep": 0.333}}
    raw["optimizers"] = [{"name": "sgd", "learning_rate": {"log_min": 0.001, "log_max": 0.1, "points": 3}}]
    path = tmp_path / "halved.yaml"
    path.write_text(yaml.safe_dump(raw))
    task = TuneLearningRate(config=str(path), name="sgd")
    build([task], workers=1)
    record = json.loads(Path(task.path).read_text())
    full = [p for p in record["grid"] if p["stopped_at_epoch"] is None]
    stopped = [p for p in record["grid"] if p["stopped_at_epoch"] == 1]
    assert len(full) >= 1 and len(stopped) >= 1 and len(full) + len(stopped) == len(record["grid"])
    assert record["rungs"][0]["epoch"] == 1 and record["stability"] is not None
    # The rate the smoke grid picks is at the top edge: the grid grew by one point beyond it, 1.0.
    assert record["extended"] == [1.0] and record["extend_cap"] == 1
    # A stopped point never trained its second epoch, and no run.json marks it finished.
    trained = [t for t in ran_tasks.tasks if t.task_family in ("TrainRun", "TrainToEpoch")]
    assert {t.learning_rate for t in trained if t.task_family == "TrainRun"} == {p["learning_rate"] for p in full}
    ran_tasks.tasks.clear()
    build([TuneLearningRate(config=str(path), name="sgd")])
    assert ran_tasks.tasks == []
    # The plan's runs are the record's full points (extension included) on the tuning seeds, all done, plus
    # the chosen rate's seed 2; the stopped points, which never finish, are not left "to do".
    capsys.readouterr()
    assert plan_main(["--config", str(path)]) == 0
    counts = f"runs: {2 * len(full) + 1} total, {2 * len(full)} done, 1 to do"
    assert counts in capsys.readouterr().out


def test_a_sigkill_during_halving_then_a_rerun_gives_the_same_cuts_and_choice(site, tmp_path):
    import os
    import signal
    import subprocess
    import sys

    raw = dict(SMOKE, experiment="halved", seeds=[0, 1, 2], tuning_seeds=[0, 1])
    raw["tuning"] = {"extend": 1, "halving": {"rungs": [1], "keep": 0.333}}
    raw["optimizers"] = [{"name": "sgd", "learning_rate": [0.003, 0.03, 0.3]}]
    path = tmp_path / "halved.yaml"
    path.write_text(yaml.safe_dump(raw))
    reference = TuneLearningRate(config=str(path), name="sgd")
    build([reference], workers=1)
    expected = json.loads(Path(reference.path).read_text())

    root = tmp_path / "killed"
    cfg = tmp_path / "killed.cfg"
    site_cfg_beside(root, cfg)
    command = [sys.executable, "-m", "luigi", "--module", "pipeline", "TuneLearningRate", "--config", str(path)]
    command += ["--name", "sgd", "--workers", "1"]
    env = {**os.environ, "LUIGI_CONFIG_PATH": str(cfg)}
    # 6 rung epochs (3 points × 2 seeds) come first: the 7th epoch done is in the survivors' full runs.
    killed = subprocess.run(command, cwd=REPO_ROOT, env={**env, "FMNIST_CRASH_AT": "train.epoch-done:7"}, timeout=300)
    assert killed.returncode == -signal.SIGKILL and not list(root.glob("tuning/*/*.json"))
    rerun = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    (written,) = list(root.glob("tuning/halved/*.json"))
    assert json.loads(written.read_text()) == expected
    # The cut was made on each run's validation accuracy at the rung epoch, as metrics.parquet holds it
    # (not its latest row, which for a survivor is a later epoch): the record matches the killed site's runs.
    (rung,) = expected["rungs"]
    for point in expected["grid"]:
        for index, seed in enumerate(point["seeds"]):
            (metrics,) = root.glob(f"runs/**/*-{point['run_hash']}/seed-{seed}/metrics.parquet")
            rows = pq.read_table(metrics).to_pylist()  # a stopped point has no run.json to open it by
            at_rung = [row["val_accuracy"] for row in rows if row["epoch"] == rung["epoch"]]
            assert rung["val_accuracies"][repr(float(point["learning_rate"]))][index] == at_rung[0]
