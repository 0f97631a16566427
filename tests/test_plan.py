"""`python -m pipeline.plan`: runs total, done and to do, and the CPU time still ahead, without TensorFlow."""

from __future__ import annotations

import os
import subprocess
import sys

import yaml

from pipeline import TrainExperiment
from pipeline.plan import main
from tests.conftest import REPO_ROOT, build

SMOKE = yaml.safe_load((REPO_ROOT / "configs" / "smoke.yaml").read_text())


def test_plan_counts_runs_and_uses_recorded_rates(site, tmp_path, capsys):
    raw = dict(SMOKE, seeds=[0, 1, 2], tuning_seeds=[0, 1])
    raw["training"] = {"epochs": 1, "batch_size": 64}
    raw["optimizers"] = [{"name": "sgd", "learning_rate": [0.01, 0.1]}, {"name": "adam", "learning_rate": 0.001}]
    config = tmp_path / "plan.yaml"
    config.write_text(yaml.safe_dump(raw))
    assert main(["--config", str(config)]) == 0
    before = capsys.readouterr().out
    # sgd: 2 rates × 2 tuning seeds + the chosen rate on seed 2; adam: 3 seeds.
    assert "runs: 8 total, 0 done, 8 to do" in before and "(reference machine)" in before

    build([TrainExperiment(config=str(config))])
    assert main(["--config", str(config)]) == 0
    after = capsys.readouterr().out
    assert "runs: 8 total, 8 done, 0 to do (6 evaluations to do)" in after  # TrainExperiment evaluates none

    raw["seeds"] = [0, 1, 2, 3]
    config.write_text(yaml.safe_dump(raw))
    assert main(["--config", str(config)]) == 0
    grown = capsys.readouterr().out
    assert "runs: 10 total, 8 done, 2 to do" in grown and "(recorded)" in grown


def test_plan_never_imports_tensorflow(tmp_path):
    code = (
        "import sys; from pipeline.plan import main; code = main(['--config', 'configs/dissecting-adam.yaml']);"
        "print('tensorflow' in sys.modules, code)"
    )
    site = tmp_path / "site.cfg"
    site.write_text(f"[pipeline]\nartifacts_root = {tmp_path / 'artifacts'}\n")
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO_ROOT,
        env={**os.environ, "LUIGI_CONFIG_PATH": str(site)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "runs: 49 total, 0 done, 49 to do" in done.stdout
    assert done.stdout.strip().splitlines()[-1] == "False 0"


def test_halving_costs_each_grid_point_the_epochs_it_will_reach_by_hand():
    from tasks.training.cost import halving_epochs

    # 3 points, keep a third at epoch 3: one goes on to 15, two stop at 3: (15 + 3 + 3) / 3 = 7 per point.
    assert halving_epochs(3, [3], 0.333, 15) == 7
    # 9 points, rungs 3 and 6, keep a third: 9 x 3 + 3 x 3 + 1 x 9 = 45 epochs, 5 per point.
    assert halving_epochs(9, [3, 6], 1 / 3, 15) == 5
    # dissecting-adam's tuning: 7 entries x 2 tuning seeds x 3 points x 7 = 294 run-epochs of 630 (46.7%).
    assert 7 * 2 * 3 * halving_epochs(3, [3], 0.333, 15) == 294


def _plan_config():
    from tasks.core.config import parse_config

    raw = dict(SMOKE, seeds=[0, 1], training={"epochs": 3, "batch_size": 64}, split={"validation_per_class": 500})
    raw["optimizers"] = [{"name": "sgd", "learning_rate": 0.1}, {"name": "adam", "learning_rate": 0.001}]
    return parse_config(raw)


def test_the_estimate_is_the_cost_model_worked_out_by_hand(tmp_path):
    """5,000 validation rows leave 55,000 to train on: 859 steps of 64 per epoch, 2,577 steps in 3 epochs."""
    from tasks.core.layout import Layout
    from tasks.training.cost import plan
    from tests.runfolders import make_run

    config, layout = _plan_config(), Layout(tmp_path / "artifacts")
    # Nothing recorded: the reference machine's 158,000 examples/s for sgd, / 1.2 for adam; 0.6 s fixed per run;
    # per epoch, validation at 3 x the rate and 0.04 s of writes; 0.5 s per evaluation.
    sgd = 0.6 + 2577 * 64 / 158_000 + 3 * (5000 / (3 * 158_000) + 0.04)  # 1.79549 s
    adam = 0.6 + 2577 * 64 * 1.2 / 158_000 + 3 * (5000 * 1.2 / (3 * 158_000) + 0.04)  # 2.01059 s
    first = plan(config, layout)
    assert (len(first.runs), len(first.to_do), first.evaluations_to_do) == (4, 4, 4)
    assert first.sources == ["reference machine"] and round(sgd, 5) == 1.79549 and round(adam, 5) == 2.01059
    assert abs(first.cpu_seconds - (2 * sgd + 2 * adam + 4 * 0.5)) < 1e-9
    assert first.wall_seconds(2) == first.cpu_seconds / 2 and first.wall_seconds(0) == first.cpu_seconds

    # sgd seed 0 trained at 100,000 examples/s with 2 s beyond its training time: sgd's seed 1 is costed at its
    # own recorded rate, adam at that rate / 1.2 ("other optimizers"), each with 2 s fixed.
    spec = next(spec for spec in first.runs if spec.name == "sgd" and spec.seed == 0)
    record = {"settings": spec.settings.as_dict(), "examples_per_second": 100_000.0, "attempts": 1}
    record |= {"wall_seconds": 10.0, "attempt_wall_seconds": 12.0}
    make_run(tmp_path, folder=layout.run_dir(spec), run_hash=spec.run_hash, seed=0, record=record)
    (layout.run_dir(spec) / "evaluation.json").unlink()
    second = plan(config, layout)
    assert (len(second.done), len(second.to_do), second.evaluations_to_do) == (1, 3, 4)
    assert second.sources == ["recorded", "recorded (other optimizers)"]
    sgd = 2.0 + 2577 * 64 / 100_000 + 3 * (5000 / 300_000 + 0.04)  # 3.81928 s
    adam = 2.0 + 2577 * 64 * 1.2 / 100_000 + 3 * (5000 * 1.2 / 300_000 + 0.04)  # 4.15914 s
    assert round(sgd, 5) == 3.81928 and round(adam, 5) == 4.15914
    assert abs(second.cpu_seconds - (sgd + 2 * adam + 4 * 0.5)) < 1e-9
