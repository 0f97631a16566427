"""The learning-rate grid shorthand and the tuning section of a config: exact lists, named errors."""

from __future__ import annotations

import pytest
import yaml

from tasks.core.config import log_grid, parse_config
from tasks.core.errors import ConfigError
from tasks.core.runs import grid_specs
from tests.conftest import REPO_ROOT

SMOKE = yaml.safe_load((REPO_ROOT / "configs" / "smoke.yaml").read_text())


def _config(rate, **extra):
    raw = dict(SMOKE, seeds=[0, 1, 2], tuning_seeds=[0, 1], **extra)
    raw["optimizers"] = [{"name": "sgd", "learning_rate": rate}]
    return parse_config(raw)


def test_a_log_grid_expands_to_an_exact_list_that_hashes_like_the_written_one():
    rates = log_grid({"log_min": 1e-4, "log_max": 1e-1, "points": 7})
    assert rates == [0.0001, 0.000316227766017, 0.001, 0.00316227766017, 0.01, 0.0316227766017, 0.1]
    assert log_grid({"log_min": 0.001, "log_max": 0.1, "points": 3}) == [0.001, 0.01, 0.1]
    short = _config({"log_min": 1e-4, "log_max": 1e-1, "points": 7})
    written = _config(rates)
    assert short.optimizers[0].learning_rates == rates
    assert [s.run_hash for s in grid_specs(short, short.optimizers[0])] == [
        s.run_hash for s in grid_specs(written, written.optimizers[0])
    ]
    # A list written out before the shorthand existed keeps its run hashes (pinned).
    pinned = _config([0.003, 0.3])
    assert [s.run_hash for s in grid_specs(pinned, pinned.optimizers[0])][::2] == PINNED_HASHES


PINNED_HASHES = ["60ba31da5b", "3504273c80"]  # computed on main before the shorthand existed


@pytest.mark.parametrize(
    ("shorthand", "message"),
    [
        ({"log_min": 1e-4, "log_max": 1e-1}, "exactly the keys"),
        ({"log_min": 1e-4, "log_max": 1e-1, "points": 7, "extra": 1}, "exactly the keys"),
        ({"log_min": 1e-1, "log_max": 1e-4, "points": 7}, "log_min < log_max"),
        ({"log_min": 0, "log_max": 1e-1, "points": 7}, "number > 0"),
        ({"log_min": 1e-4, "log_max": 1e-1, "points": 1}, r"points: expected an integer in \[2, 50\]"),
        ({"log_min": 1e-4, "log_max": 1e-1, "points": 2.5}, "points: expected an integer"),
    ],
)
def test_a_bad_shorthand_is_a_config_error_naming_the_key(shorthand, message):
    with pytest.raises(ConfigError, match=message) as caught:
        _config(shorthand)
    assert "optimizers.0.learning_rate" in str(caught.value)


def test_the_tuning_section_is_checked_against_the_budget_and_the_tuning_seeds():
    config = _config([0.01, 0.1], tuning={"extend": 2, "halving": {"rungs": [1], "keep": 0.333}})
    assert config.tuning.extend == 2 and config.tuning.halving.rungs == [1]
    for tuning, message in (
        ({"halving": {"rungs": [2], "keep": 0.5}}, "below training.epochs"),
        ({"halving": {"rungs": [1], "keep": 1.5}}, "tuning.halving.keep"),
        ({"halving": {"rungs": [1, 1], "keep": 0.5}}, "increasing order"),
        ({"extend": -1}, "tuning.extend"),
        ({"extnd": 1}, "did you mean 'extend'"),
    ):
        with pytest.raises(ConfigError, match=message):
            _config([0.01, 0.1], tuning=tuning)
    raw = dict(SMOKE, tuning={"extend": 1})
    with pytest.raises(ConfigError, match="add tuning_seeds"):
        parse_config(raw)
