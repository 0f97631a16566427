"""Budgets in steps: `training: {steps: N}` instead of `epochs`, validated, and leaving epoch hashes alone."""

from __future__ import annotations

import copy

import pytest
import yaml

from tasks.core.config import TrainingConfig, load_config, parse_config
from tasks.core.errors import ConfigError
from tasks.core.runs import grid_specs, run_settings
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
