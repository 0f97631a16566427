"""Budgets in steps: `training: {steps: N}` instead of `epochs`, validated, and leaving epoch hashes alone."""

from __future__ import annotations

import copy
import json
import signal
import subprocess
from types import SimpleNamespace

import pytest
import yaml

from tasks.core.config import TrainingConfig, load_config, parse_config
from tasks.core.errors import ConfigError
from tasks.core.runs import grid_specs, run_settings
from tests.childrun import train_in_child
from tests.conftest import REPO_ROOT

SMOKE = yaml.safe_load((REPO_ROOT / "configs" / "smoke.yaml").read_text())


def _with_training(**training):
    raw = copy.deepcopy(SMOKE)
    raw["training"] = {"batch_size": raw["training"]["batch_size"], **training}
    return raw


def test_an_epoch_config_keeps_the_run_hash_it_had_before_step_budgets():
    # Computed on main before `steps` existed: configs/default.yaml's first sgd grid point.
    config = load_config(REPO_ROOT / "configs" / "default.yaml")
    spec = grid_specs(config, config.optimizers[0])[0]
    assert (spec.name, spec.learning_rate, spec.run_hash) == ("sgd", 0.03, "cbc3518422")
    assert "steps" not in spec.settings.as_dict()["training"]


@pytest.mark.parametrize(
    ("training", "found"),
    [({"epochs": 2, "steps": 100}, "found both"), ({}, "found neither")],
)
def test_exactly_one_budget_is_given(training, found):
    with pytest.raises(ConfigError, match=f"training.epochs / training.steps: expected exactly one budget, {found}"):
        parse_config(_with_training(**training))


@pytest.mark.parametrize("steps", [0, -5, 2.5, "many"])
def test_a_bad_step_count_is_named(steps):
    with pytest.raises(ConfigError, match="training.steps"):
        parse_config(_with_training(steps=steps))


def test_a_step_budget_is_its_own_identity():
    by_steps, by_epochs = parse_config(_with_training(steps=7)), parse_config(_with_training(epochs=1))
    entry = by_steps.optimizers[0]
    settings = run_settings(by_steps, entry, 0.01)
    assert settings.as_dict()["training"] == {"steps": 7, "batch_size": SMOKE["training"]["batch_size"]}
    assert settings.run_hash != run_settings(by_epochs, by_epochs.optimizers[0], 0.01).run_hash
    assert settings.run_hash != run_settings(parse_config(_with_training(steps=8)), entry, 0.01).run_hash


def test_total_steps_and_epochs_with_a_final_partial_epoch():
    budget = TrainingConfig(steps=25, batch_size=8)
    assert (budget.total_steps(10), budget.total_epochs(10)) == (25, 3)
    assert (TrainingConfig(steps=20, batch_size=8).total_epochs(10)) == 2
    assert (TrainingConfig(epochs=4, batch_size=8).total_steps(10)) == 40


# -- training to a step budget (tests/test_train.py's data: 20 steps an epoch) -------------------------------

STEP_BUDGET = 30  # one whole epoch, then a final partial one of 10 steps


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    from tests.test_train import write_data

    return write_data(tmp_path_factory.mktemp("arrays"))


def _step_settings(steps: int = STEP_BUDGET) -> dict:
    from tests.test_train import make_settings

    settings = make_settings("momentum", 0.03)
    settings["training"] = {"steps": steps, "batch_size": settings["training"]["batch_size"]}
    return settings


def _child(data, run_dir, crash_at: str | None = None, settings: dict | None = None) -> subprocess.CompletedProcess:
    """A run in a child process, with 4-step chunks (so a kill can land inside the partial epoch)."""
    return train_in_child(settings or _step_settings(), *data, run_dir, crash_at=crash_at, chunk_steps=4)


@pytest.fixture(scope="module")
def reference(data, tmp_path_factory) -> dict:
    """The uninterrupted 30-step run (its run.json, and its folder as `dir`), trained in a child process."""
    run_dir = tmp_path_factory.mktemp("reference") / "run"
    done = _child(data, run_dir)
    assert done.returncode == 0, done.stderr[-3000:]
    return dict(json.loads((run_dir / "run.json").read_text()), dir=run_dir)


def test_a_step_budget_trains_whole_epochs_then_a_partial_one(reference):
    from tests.test_train import read_metrics

    metrics = read_metrics(reference["dir"])
    assert metrics["epoch"] == [1, 2]
    assert reference["status"] == "completed" and reference["epochs_completed"] == 2
    assert sum(attempt["steps_run"] for attempt in reference["attempt_history"]) == STEP_BUDGET
    # The partial epoch's means are over its own 10 steps.
    assert all(0 < accuracy <= 1 for accuracy in metrics["train_accuracy"])


def test_a_step_budget_of_whole_epochs_equals_the_epoch_budget(data, tmp_path):
    from tests.test_train import make_settings, train

    by_steps = train(data, tmp_path / "steps", _step_settings(40))
    by_epochs = train(data, tmp_path / "epochs", make_settings("momentum", 0.03, epochs=2))
    assert by_steps["weights_sha256"] == by_epochs["weights_sha256"]


@pytest.mark.parametrize(
    ("crash_at", "left"),
    [
        ("train.mid-epoch:7", 10),  # inside the partial epoch 2 (chunks end at its steps 4, 8, 10): redo 10
        ("train.checkpoint-saved:2", 10),  # step 30's files saved, latest.json not yet: redo epoch 2
        ("train.epoch-done:2", 0),  # step 30 checkpointed, run.json not written: nothing left to train
    ],
)
def test_a_kill_mid_budget_resumes_to_the_uninterrupted_weights(data, tmp_path, reference, crash_at, left):
    run_dir = tmp_path / "run"
    killed = _child(data, run_dir, crash_at)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    assert not (run_dir / "run.json").exists()
    resumed = _child(data, run_dir)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    record = json.loads((run_dir / "run.json").read_text())
    assert record["weights_sha256"] == reference["weights_sha256"]
    assert record["attempts"] == 2
    # The resume ran only what was left after the last checkpoint latest.json named.
    assert record["attempt_history"][-1]["steps_run"] == left


def test_plan_costs_a_step_budget_in_steps():
    from tasks.training.cost import TRAIN_ROWS, Rate, run_seconds

    def cost(**training) -> float:
        config = parse_config(_with_training(**training))
        spec = SimpleNamespace(settings=run_settings(config, config.optimizers[0], 0.01))  # all run_seconds reads
        return run_seconds(spec, Rate(1000.0, 5.0, "test"))

    batch = SMOKE["training"]["batch_size"]
    per_epoch = (TRAIN_ROWS - 10 * parse_config(SMOKE).split.validation_per_class) // batch
    assert cost(steps=3 * per_epoch) == pytest.approx(cost(epochs=3))
    # Half an epoch more costs half an epoch's training and one more validation.
    assert cost(epochs=3) < cost(steps=3 * per_epoch + per_epoch // 2) < cost(epochs=4)


def test_halving_with_a_step_budget_is_refused_by_name():
    raw = yaml.safe_load((REPO_ROOT / "configs" / "dissecting-adam.yaml").read_text())
    raw["training"] = {"steps": 3000, "batch_size": 128}
    with pytest.raises(ConfigError, match="tuning.halving: its rungs are epoch counts"):
        parse_config(raw)
