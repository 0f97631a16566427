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
