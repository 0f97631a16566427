"""A config file cannot cost more than a config file: size, alias expansion and nesting are bounded, and
every value an error message quotes is shortened. Names are checked as whole strings."""

from __future__ import annotations

import time

import pytest
import yaml

from tasks.core.config import check_safe_name, load_config
from tasks.core.configfile import MAX_CONFIG_BYTES
from tasks.core.errors import ConfigError

GOOD = """\
experiment: unit
model: {name: mlp, params: {hidden: [16]}}
training: {epochs: 1, batch_size: 8}
seeds: [0]
optimizers:
  - {name: sgd, learning_rate: 0.1}
"""


def billion_laughs(levels: int = 9) -> str:
    """About 1 KB of YAML whose aliases expand to 9**levels strings ("billion laughs")."""
    lines = ['l0: &l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for level in range(1, levels + 1):
        lines.append(f"l{level}: &l{level} [" + ", ".join([f"*l{level - 1}"] * 9) + "]")
    return "\n".join(lines) + "\n"


def refused_quickly(path, budget: float = 1.0) -> str:
    started = time.monotonic()
    with pytest.raises(ConfigError) as refused:
        load_config(path)
    elapsed = time.monotonic() - started
    assert elapsed < budget, f"took {elapsed:.2f} s"
    return str(refused.value)


def test_an_alias_bomb_is_refused_at_once_with_a_short_message(tmp_path):
    path = tmp_path / "bomb.yaml"
    path.write_text(billion_laughs() + GOOD.replace("experiment: unit", "experiment: *l9"))
    assert path.stat().st_size < 1500

    message = refused_quickly(path)

    assert str(path) in message and "alias" in message and "expand" in message
    assert len(message) < 600, message


def test_a_recursive_alias_is_refused(tmp_path):
    path = tmp_path / "loop.yaml"
    path.write_text("experiment: &me [*me]\n")
    message = refused_quickly(path)
    assert "alias" in message and len(message) < 600, message


def test_deep_nesting_is_refused_not_a_recursion_error(tmp_path):
    path = tmp_path / "deep.yaml"
    path.write_text("experiment: " + "[" * 5000 + "]" * 5000 + "\n")
    message = refused_quickly(path)
    assert "nested" in message and len(message) < 600, message


def test_an_oversized_file_is_refused_before_parsing(tmp_path):
    path = tmp_path / "huge.yaml"
    path.write_text(GOOD + "# " + "x" * MAX_CONFIG_BYTES + "\n")
    message = refused_quickly(path, budget=0.5)
    assert f"more than {MAX_CONFIG_BYTES:,} bytes" in message, message


def test_quoted_values_are_shortened(tmp_path):
    path = tmp_path / "long.yaml"
    text = GOOD.replace("experiment: unit", f"experiment: {['x' * 100] * 2000}")
    text = text.replace("epochs: 1", f"epochs: '{'9' * 50_000}'")
    path.write_text(text)
    message = refused_quickly(path)
    assert "experiment" in message and "training.epochs" in message
    assert len(message) < 1500, message
    assert "..." in message


def test_the_shipped_style_of_config_still_loads(tmp_path):
    path = tmp_path / "ok.yaml"
    path.write_text(GOOD)
    assert load_config(path).experiment == "unit"
    anchors = GOOD.replace("{name: sgd, learning_rate: 0.1}", "&sgd {name: sgd, learning_rate: 0.1}")
    path.write_text(anchors + "  - {name: adam, learning_rate: 0.001}\n")
    assert [entry.name for entry in load_config(path).optimizers] == ["sgd", "adam"]
    assert yaml.safe_load(anchors)  # plain YAML, anchors and all


@pytest.mark.parametrize("name", ["unit\n", "unit\r\n", "\nunit", "unit/x", "..", "a..b", "", "x" * 65])
def test_unsafe_names_are_refused_whole(name):
    with pytest.raises(ValueError, match="not safe as a folder name"):
        check_safe_name(name, "experiment name")


def test_a_trailing_newline_in_an_experiment_name_is_refused(tmp_path):
    path = tmp_path / "newline.yaml"
    path.write_text(GOOD.replace("experiment: unit", 'experiment: "unit\\n"'))
    message = refused_quickly(path)
    assert "experiment" in message and "not safe as a folder name" in message
