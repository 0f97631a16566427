"""The experiment config: one schema, every bad value refused before any work, stable run hashes."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tasks.core.config import load_config, parse_config
from tasks.core.errors import ConfigError
from tasks.core.registry import MODEL_PARAMS, OPTIMIZER_PARAMS
from tasks.core.runs import expand_runs, final_specs, tuned_entries
from tests.conftest import luigi_cli

REPO = Path(__file__).resolve().parents[1]

BASE = {
    "experiment": "unit",
    "model": {"name": "mlp", "params": {"hidden": [16]}},
    "training": {"epochs": 2, "batch_size": 32},
    "seeds": [0, 1],
    "optimizers": [
        {"name": "sgd", "learning_rate": 0.1},
        {"name": "adam", "learning_rate": [0.001, 0.01]},
    ],
}


def with_change(path: tuple, value):
    raw = copy.deepcopy(BASE)
    node = raw
    for key in path[:-1]:
        node = node[key]
    if value is _DELETE:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return raw


_DELETE = object()


def test_shipped_configs_load():
    paths = sorted((REPO / "configs").glob("*.yaml"))
    assert [p.name for p in paths] == [
        "default.yaml",
        "dissecting-adam.yaml",
        "paper-p1-short.yaml",
        "paper-p1.yaml",
        "smoke.yaml",
    ]
    for path in paths:
        config = load_config(path)
        choices = {entry.name: entry.learning_rates[0] for entry in tuned_entries(config)}
        assert final_specs(config, choices), path
    dissecting = load_config(REPO / "configs" / "dissecting-adam.yaml")
    assert (dissecting.adaptive.pilot, dissecting.adaptive.max) == (3, 20) and dissecting.split.varies
    assert {e.name for e in tuned_entries(dissecting)} == {
        "momentum",
        "mssd",
        "msvag",
        "adam",
        "sgd",
        "ssd",
        "svag",
    }


def test_grid_and_seeds_expand_in_order():
    runs = expand_runs(parse_config(BASE))
    assert [(r.name, r.learning_rate, r.seed) for r in runs] == [
        ("sgd", 0.1, 0),
        ("sgd", 0.1, 1),
        ("adam", 0.001, 0),
        ("adam", 0.001, 1),
        ("adam", 0.01, 0),
        ("adam", 0.01, 1),
    ]
    # Defaults are resolved into the settings, so the hash covers them.
    assert runs[2].settings.optimizer.params == {"beta1": 0.9, "beta2": 0.999, "epsilon": 1e-08}


def test_hash_is_stable_and_covers_exactly_the_run_settings():
    runs = expand_runs(parse_config(BASE))
    again = expand_runs(parse_config(copy.deepcopy(BASE)))
    assert [r.run_hash for r in runs] == [r.run_hash for r in again]
    # Seeds share a folder name; grid points do not.
    assert runs[0].dir_name == runs[1].dir_name
    assert runs[2].dir_name != runs[4].dir_name
    assert runs[0].relative_dir.endswith("/seed-0") and runs[1].relative_dir.endswith("/seed-1")
    # Editing adam's rate leaves sgd's hash alone; the experiment name is not part of any hash.
    edited = with_change(("optimizers", 1, "learning_rate"), [0.002, 0.01])
    edited["experiment"] = "renamed"
    edited_runs = expand_runs(parse_config(edited))
    assert edited_runs[0].run_hash == runs[0].run_hash
    assert edited_runs[2].run_hash != runs[2].run_hash
    assert edited_runs[4].run_hash == runs[4].run_hash
    # A hash is a pure function of the settings: this exact value must never drift silently.
    assert len(runs[0].run_hash) == 10 and runs[0].dir_name.startswith("mlp-sgd-")


@pytest.mark.parametrize(
    "change, expected",
    [
        ((("model", "name"), "resnet"), ["model", "unknown model name 'resnet'", "mlp"]),
        ((("optimizers", 0, "name"), "sgdd"), ["optimizers.0", "unknown optimizer 'sgdd'", "did you mean 'sgd'"]),
        ((("optimizers", 0, "learning_rate"), -0.1), ["optimizers.0.learning_rate", "> 0", "-0.1"]),
        ((("optimizers", 0, "learning_rate"), 0), ["optimizers.0.learning_rate", "> 0", "found 0"]),
        ((("optimizers", 1, "learning_rate"), [0.1, -1]), ["optimizers.1.learning_rate", "found -1"]),
        ((("training", "epochs"), 0), ["training.epochs", "greater than or equal to 1", "found 0"]),
        ((("training", "batch_size"), "64"), ["training.batch_size", "valid integer", "'64'"]),
        ((("training", "epochs"), 2.5), ["training.epochs", "found 2.5"]),
        ((("training", "epoch"), 3), ["training.epoch", "unknown key", "did you mean 'epochs'"]),
        ((("optimizer",), []), ["optimizer", "unknown key", "did you mean 'optimizers'"]),
        ((("optimizers", 1, "params"), {"beta_1": 0.8}), ["params.beta_1", "did you mean 'beta1'"]),
        ((("optimizers", 1, "params"), {"beta1": 1.5}), ["params.beta1", "[0, 1)", "1.5"]),
        ((("experiment",), "../x"), ["experiment", "'../x'", "not safe"]),
        ((("experiment",), "/abs"), ["experiment", "'/abs'", "not safe"]),
        ((("optimizers", 0, "name"), "../../etc"), ["optimizers.0", "'../../etc'", "not safe"]),
        # Red team 6: the temp-file marker inside a name made a finished target look like a temp file.
        ((("optimizers", 0, "name"), "sgd.tmp-v2"), ["optimizers.0", "'sgd.tmp-v2'", "not safe", "'.tmp-'"]),
        ((("experiment",), "nightly.tmp-1"), ["experiment", "'nightly.tmp-1'", "'.tmp-'"]),
        ((("seeds",), []), ["seeds", "at least 1"]),
        ((("seeds",), [1, 1]), ["seeds", "listed twice"]),
        ((("training",), _DELETE), ["training", "required key is missing"]),
        ((("model", "params"), {"hidden": [0]}), ["params.hidden", "layer sizes", "[0]"]),
    ],
)
def test_bad_values_name_the_key(change, expected):
    path, value = change
    with pytest.raises(ConfigError) as caught:
        parse_config(with_change(path, value), source="exp.yaml")
    message = str(caught.value)
    assert message.startswith("exp.yaml: ")
    for fragment in expected:
        assert fragment in message, f"{fragment!r} not in {message!r}"


@pytest.mark.parametrize("kind", ["folder", "fifo"])
def test_a_config_path_that_is_not_a_file_says_what_it_is(tmp_path, kind):
    # Red team 12: a folder given as --config was reported "not found".
    path = tmp_path / "configs"
    if kind == "folder":
        path.mkdir()
    else:
        os.mkfifo(path)  # never opened: reading a FIFO would wait for a writer forever
    with pytest.raises(ConfigError) as refused:
        load_config(path)
    found = "a folder" if kind == "folder" else "a FIFO"
    assert str(refused.value).startswith(f"config file {path}: expected a YAML file, found {found}"), refused.value
    assert "not found" not in str(refused.value) and "--config" in str(refused.value)


def test_a_missing_config_says_not_found(tmp_path):
    with pytest.raises(ConfigError, match=f"config file {tmp_path / 'none.yaml'} not found; pass --config"):
        load_config(tmp_path / "none.yaml")


def test_duplicate_run_names_are_refused():
    raw = with_change(("optimizers",), [{"name": "adam", "learning_rate": 0.1}, {"name": "adam", "learning_rate": 0.2}])
    with pytest.raises(ConfigError, match=r"duplicate run name\(s\) \['adam'\]"):
        parse_config(raw)
    # Two entries of one registry optimizer are fine under distinct names.
    raw["optimizers"][1] = {"name": "adam-fast", "optimizer": "adam", "learning_rate": 0.2}
    names = [r.dir_name.split("-")[1] for r in expand_runs(parse_config(raw))]
    assert "adam" in names


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match=r"config file .*nope\.yaml not found"):
        load_config(tmp_path / "nope.yaml")


def test_yaml_syntax_error_gives_the_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("experiment: x\nmodel:\n  name: mlp\n  params: {hidden: [16]\ntraining: {}\n")
    with pytest.raises(ConfigError) as caught:
        load_config(bad)
    assert str(bad) in str(caught.value) and "line 5" in str(caught.value) and "YAML syntax error" in str(caught.value)


def test_duplicate_yaml_keys_are_refused(tmp_path):
    bad = tmp_path / "dup.yaml"
    bad.write_text(yaml.safe_dump(BASE) + "seeds: [3]\n")
    with pytest.raises(ConfigError, match=r"duplicate key 'seeds' \(first on line \d+\)"):
        load_config(bad)


def test_top_level_must_be_a_mapping(tmp_path):
    bad = tmp_path / "list.yaml"
    bad.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="expected a mapping of sections at the top level, found list"):
        load_config(bad)


def test_yaml_tags_cannot_run_code(tmp_path):
    bad = tmp_path / "evil.yaml"
    bad.write_text("experiment: !!python/object/apply:os.system ['echo pwned']\n")
    with pytest.raises(ConfigError, match="YAML syntax error"):
        load_config(bad)


def test_registry_names_are_known_without_tensorflow():
    code = "import sys, tasks.core.config; assert 'tensorflow' not in sys.modules; print('ok')"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "ok"
    assert {"sgd", "momentum", "nesterov", "adam", "rmsprop", "adagrad", "msvag", "svag"} <= set(OPTIMIZER_PARAMS)
    assert set(MODEL_PARAMS) == {"logreg", "mlp", "cnn_2c2d", "cnn_p1"}


def test_sign_descent_optimizers_and_the_p1_network_are_accepted():
    raw = with_change(
        ("optimizers",), [{"name": "ssd", "learning_rate": 1e-4}, {"name": "mssd", "learning_rate": 1e-4}]
    )
    raw["model"] = {"name": "cnn_p1"}
    runs = expand_runs(parse_config(raw))
    assert [(r.settings.optimizer.name, r.settings.optimizer.params) for r in runs[::2]] == [
        ("ssd", {}),
        ("mssd", {"beta": 0.9}),
    ]
    assert runs[0].dir_name.startswith("cnn_p1-ssd-") and runs[0].settings.as_dict()["model"] == {
        "name": "cnn_p1",
        "params": {},
    }
    raw["optimizers"][1]["params"] = {"beta": 0.5}
    assert expand_runs(parse_config(raw))[2].settings.optimizer.params == {"beta": 0.5}


@pytest.mark.parametrize(
    "entry, key, found",
    [
        ({"name": "mssd", "learning_rate": 0.1, "params": {"beta": 1.0}}, "optimizers.1.params.beta", "1.0"),
        ({"name": "mssd", "learning_rate": 0.1, "params": {"beta": 0}}, "optimizers.1.params.beta", "found 0"),
        ({"name": "ssd", "learning_rate": 0.1, "params": {"beta": 0.9}}, "optimizers.1.params.beta", "unknown"),
    ],
)
def test_bad_sign_descent_params_name_the_key(entry, key, found):
    with pytest.raises(ConfigError) as caught:
        parse_config(with_change(("optimizers", 1), entry), source="exp.yaml")
    assert key in str(caught.value) and found in str(caught.value)


def test_an_infinite_epsilon_is_refused_naming_the_key(tmp_path):
    """YAML `.inf` is a float that passed `> 0` and then crashed training with a traceback."""
    raw = with_change(("optimizers", 1, "params"), {"epsilon": float("inf")})
    with pytest.raises(ConfigError) as caught:
        parse_config(raw, source="exp.yaml")
    message = str(caught.value)
    assert "optimizers.1.params.epsilon" in message and "finite" in message and "found inf" in message
    # The same through a YAML file, and for NaN and other parameters.
    text = yaml.safe_dump(with_change(("optimizers", 1), {"name": "adam", "learning_rate": 0.1}))
    for params, key in (
        ("{epsilon: .inf}", "epsilon"),
        ("{epsilon: .nan}", "epsilon"),
        ("{beta1: .nan}", "beta1"),
    ):
        path = tmp_path / "exp.yaml"
        path.write_text(text.replace("name: adam", f"name: adam\n  params: {params}"))
        with pytest.raises(ConfigError, match=rf"optimizers\.1\.params\.{key}: expected .+, found (nan|inf)"):
            load_config(path)
    for name, params in (("rmsprop", {"epsilon": float("inf")}), ("adagrad", {"initial_accumulator_value": 1e400})):
        entry = {"name": name, "learning_rate": 0.1, "params": params}
        with pytest.raises(ConfigError, match=rf"optimizers\.1\.params\.{next(iter(params))}: expected a finite"):
            parse_config(with_change(("optimizers", 1), entry))


def test_date_seed_policy_derives_seeds_from_the_date():
    import datetime as dt

    raw = copy.deepcopy(BASE)
    raw["nightly"] = {"seed_policy": "date"}
    config = parse_config(raw)
    first = [r.seed for r in expand_runs(config, dt.date(2026, 1, 1))]
    again = [r.seed for r in expand_runs(config, dt.date(2026, 1, 1))]
    other = [r.seed for r in expand_runs(config, dt.date(2026, 1, 2))]
    assert first == again and first != other
    assert [r.seed for r in expand_runs(config)] == [0, 1, 0, 1, 0, 1]


@pytest.mark.parametrize(
    "text, expected",
    [
        (None, "not found"),
        ("experiment: x\nmodel: {name: mlp\n", "YAML syntax error"),
        (
            yaml.safe_dump({**BASE, "optimizers": [{"name": "adamw", "learning_rate": 0.1}]}),
            "unknown optimizer 'adamw' (did you mean 'adam'?)",
        ),
        (yaml.safe_dump({**BASE, "trainning": BASE["training"]}), "unknown key (did you mean 'training'?)"),
    ],
    ids=["missing-file", "yaml-syntax", "unknown-optimizer", "misspelled-key"],
)
def test_the_command_line_refuses_a_bad_config_before_any_work(tmp_path, text, expected):
    config = tmp_path / "exp.yaml"
    if text is not None:
        config.write_text(text)
    root = tmp_path / "artifacts"
    site = tmp_path / "site.cfg"
    site.write_text(f"[pipeline]\nartifacts_root = {root}\n")
    done = luigi_cli(["FullReport", "--config", str(config)], site, 120)
    assert done.returncode == 35, done.stderr[-2000:]  # [retcode] scheduling_error
    assert "ConfigError" in done.stderr and str(config) in done.stderr and expected in done.stderr
    assert not root.exists(), "nothing may be fetched or written for a bad config"
