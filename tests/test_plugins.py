"""Optimizer plugins in the registry and the config schema: found by entry point, imported only when named,
validated like built-ins, refused with the project's own error when broken, and part of run identity."""

from __future__ import annotations

import logging
import subprocess
import sys

import pytest

from tasks.core import plugins
from tasks.core.config import parse_config
from tasks.core.errors import ConfigError
from tasks.core.registry import OPTIMIZER_PARAMS, optimizer_kind, optimizer_names
from tasks.core.runs import OptimizerSettings, RunSettings, expand_runs, run_settings
from tests.conftest import REPO_ROOT
from tests.plugin_install import PluginPath, write_distribution

GOOD = """
def factory(learning_rate, *, beta=0.9, warmup=10, scale=1.0):
    import tensorflow.compat.v1 as tf
    return tf.train.GradientDescentOptimizer(learning_rate * scale)
"""


def config_with(entries: list[dict]) -> dict:
    return {
        "experiment": "plugins",
        "model": {"name": "mlp"},
        "training": {"epochs": 3, "batch_size": 32},
        "split": {"validation_per_class": 10, "seed": 0},
        "seeds": [0],
        "optimizers": entries,
    }


@pytest.fixture
def plugin_path(monkeypatch):
    path = PluginPath(monkeypatch)
    yield path
    path.close()
    for name in [name for name in sys.modules if name.startswith("fake_plugin")]:
        del sys.modules[name]


@pytest.fixture
def fake_plugin(tmp_path, plugin_path):
    """An installed distribution `fake-plugin` declaring the optimizer `fancy`."""
    site = write_distribution(
        tmp_path / "site", "fake-plugin", {"fancy": "fake_plugin.opt:factory"},
        {"fake_plugin/__init__.py": "", "fake_plugin/opt.py": GOOD},
    )  # fmt: skip
    plugin_path.use(site)
    return site


# Computed on main before plugins existed (9cb7edd): built-in runs must keep their folders.
PINNED_BUILTIN_HASHES = {
    "sgd": "e48c3819ca",
    "momentum": "fc552f7dd1",
    "adam": "47bacf6715",
    "msvag": "2d30d557e2",
    "mssd": "2aab6cadb9",
}


def test_built_in_run_hashes_are_the_ones_from_before_plugins(fake_plugin):
    config = parse_config(config_with([{"name": name, "learning_rate": 0.1} for name in PINNED_BUILTIN_HASHES]))
    found = {entry.name: run_settings(config, entry, 0.1) for entry in config.optimizers}
    assert {name: settings.run_hash for name, settings in found.items()} == PINNED_BUILTIN_HASHES
    assert all("plugin" not in settings.as_dict()["optimizer"] for settings in found.values())


def test_a_plugin_is_found_by_entry_point_and_imported_only_when_named(fake_plugin):
    assert "fancy" in optimizer_names() and set(OPTIMIZER_PARAMS) <= set(optimizer_names())
    parse_config(config_with([{"name": "sgd", "learning_rate": 0.1}]))
    assert "fake_plugin.opt" not in sys.modules  # listing entry points reads metadata only
    config = parse_config(config_with([{"name": "fancy", "learning_rate": 0.1}]))
    assert "fake_plugin.opt" in sys.modules
    assert config.optimizers[0].params == {"beta": 0.9, "scale": 1.0, "warmup": 10}
    kind = optimizer_kind("fancy")
    assert (kind.distribution, kind.version, kind.builtin) == ("fake-plugin", "1.0", False)
    assert kind.source_file == str(fake_plugin / "fake_plugin" / "opt.py")
    # Built-ins come out of the same lookup, with the same shape.
    assert optimizer_kind("adam").factory == "tasks.training.optimizers:adam" and optimizer_kind("adam").builtin


def test_plugin_hyper_parameters_are_validated_like_built_ins(fake_plugin):
    entry = {"name": "mine", "optimizer": "fancy", "learning_rate": 0.1}
    config = parse_config(config_with([{**entry, "params": {"beta": 0.5, "warmup": 3, "scale": 2}}]))
    assert config.optimizers[0].params == {"beta": 0.5, "scale": 2, "warmup": 3}
    cases = [
        ({"betta": 0.5}, r"optimizers\.0\.params\.betta: unknown parameter \(did you mean 'beta'\?\)"),
        ({"beta": float("nan")}, r"optimizers\.0\.params\.beta: expected a finite number, found nan"),
        ({"beta": "0.5"}, r"optimizers\.0\.params\.beta: expected a finite number, found '0.5'"),
        ({"warmup": 2.5}, r"optimizers\.0\.params\.warmup: expected a whole number, found 2.5"),
        ({"warmup": True}, r"optimizers\.0\.params\.warmup: expected a whole number, found True"),
    ]
    for params, message in cases:
        with pytest.raises(ConfigError, match=message):
            parse_config(config_with([{**entry, "params": params}]))


def test_an_unknown_name_lists_plugins_with_the_built_ins(fake_plugin):
    with pytest.raises(ConfigError, match=r"unknown optimizer 'fancie' \(did you mean 'fancy'\?\).*fancy"):
        parse_config(config_with([{"name": "fancie", "learning_rate": 0.1}]))


def test_a_plugin_that_fails_to_import_loads_as_a_broken_optimizer_whose_runs_fail_naming_it(tmp_path, plugin_path):
    source = "import numpy\nraise RuntimeError('broken on purpose')\n"
    site = write_distribution(
        tmp_path / "site", "fake-plugin", {"fancy": "fake_plugin.opt:factory"},
        {"fake_plugin/__init__.py": "", "fake_plugin/opt.py": source},
    )  # fmt: skip
    plugin_path.use(site)
    warnings: list[str] = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = lambda record: warnings.append(record.getMessage())
    logger = logging.getLogger("tasks.core.plugins")  # its own handler: what reaches caplog is order-dependent
    logger.addHandler(handler)
    try:
        config = parse_config(config_with([{"name": "fancy", "learning_rate": 0.1, "params": {"beta": 0.5}}]))
    finally:
        logger.removeHandler(handler)
    kind = optimizer_kind("fancy")
    assert kind.params is None and kind.identity["distribution"] == "fake-plugin"
    for part in ("'fancy'", "fake-plugin 1.0", str(site / "fake_plugin" / "opt.py"),
                 "failed to import", "RuntimeError: broken on purpose", "line 2"):  # fmt: skip
        assert part in kind.broken, (part, kind.broken)
    assert warnings == [f"{kind.broken}; its runs will be recorded as failed"]
    # Its params are taken as given (finite numbers only): the signature that would check them is unknown.
    (spec,) = expand_runs(config)
    assert spec.settings.optimizer.params == {"beta": 0.5}
    with pytest.raises(ConfigError, match=r"optimizers\.0\.params\.beta: expected a finite number, found 'x'"):
        parse_config(config_with([{"name": "fancy", "learning_rate": 0.1, "params": {"beta": "x"}}]))
    from tasks.core.errors import PluginFault
    from tasks.training.optimizers import make_optimizer

    with pytest.raises(PluginFault) as fault:
        make_optimizer(spec.settings.optimizer)
    assert str(fault.value) == kind.broken
    parse_config(config_with([{"name": "sgd", "learning_rate": 0.1}]))  # a config without it is unaffected


@pytest.mark.parametrize(
    ("source", "problem"),
    [
        ("def factory(learning_rate, *, beta):\n    pass\n", "keyword-only parameter 'beta' has no default"),
        ("def factory(learning_rate, *, name='x'):\n    pass\n", "keyword-only parameter 'name' has default 'x'"),
        ("def factory(learning_rate, momentum):\n    pass\n", "one positional parameter, the learning rate"),
        ("factory = 3\n", "expected a callable factory"),
    ],
)
def test_a_factory_with_an_unusable_signature_is_refused(tmp_path, plugin_path, source, problem):
    site = write_distribution(
        tmp_path / "site", "fake-plugin", {"fancy": "fake_plugin:factory"}, {"fake_plugin/__init__.py": source}
    )
    plugin_path.use(site)
    with pytest.raises(ConfigError, match="optimizer plugin 'fancy' \\(distribution fake-plugin 1.0") as caught:
        parse_config(config_with([{"name": "fancy", "learning_rate": 0.1}]))
    assert problem in str(caught.value)


def test_a_plugin_named_like_a_built_in_is_refused_naming_both_distributions(tmp_path, plugin_path):
    site = write_distribution(
        tmp_path / "site", "adam-clone", {"adam": "fake_plugin:factory"}, {"fake_plugin/__init__.py": GOOD}
    )
    plugin_path.use(site)
    with pytest.raises(ConfigError, match=r"'adam' is declared twice: built into fmnist-pipeline and as a plugin "
                                          r"by adam-clone.*refused"):  # fmt: skip
        parse_config(config_with([{"name": "adam", "learning_rate": 0.1}]))


def test_two_distributions_declaring_one_name_are_refused(tmp_path, plugin_path):
    write_distribution(tmp_path / "site", "first-plugin", {"fancy": "fake_plugin:factory"}, {})
    site = write_distribution(
        tmp_path / "site", "second-plugin", {"fancy": "fake_plugin:factory"}, {"fake_plugin/__init__.py": GOOD}
    )
    plugin_path.use(site)
    with pytest.raises(ConfigError, match="declared by more than one distribution: first-plugin, second-plugin"):
        parse_config(config_with([{"name": "fancy", "learning_rate": 0.1}]))


def test_run_identity_covers_the_plugin_source_and_version(fake_plugin, plugin_path):
    def fancy_settings() -> dict[str, RunSettings]:
        entries = [{"name": "fancy", "learning_rate": 0.1}, {"name": "sgd", "learning_rate": 0.1}]
        config = parse_config(config_with(entries))
        return {entry.name: run_settings(config, entry, 0.1) for entry in config.optimizers}

    before = fancy_settings()
    identity = before["fancy"].as_dict()["optimizer"]["plugin"]
    assert identity["distribution"] == "fake-plugin" and identity["version"] == "1.0"
    assert len(identity["source_sha256"]) == 64
    assert fancy_settings()["fancy"].run_hash == before["fancy"].run_hash  # unchanged code: the same run

    # A file of the plugin's package that is not the factory's module counts too.
    (fake_plugin / "fake_plugin" / "__init__.py").write_text("# edited\n")
    after = fancy_settings()
    assert after["fancy"].run_hash != before["fancy"].run_hash
    assert after["sgd"].run_hash == before["sgd"].run_hash == PINNED_BUILTIN_HASHES["sgd"]
    # Bytecode caches are not source.
    (fake_plugin / "fake_plugin" / "__pycache__").mkdir(exist_ok=True)
    (fake_plugin / "fake_plugin" / "__pycache__" / "opt.cpython-311.pyc").write_bytes(b"\0")
    assert fancy_settings()["fancy"].run_hash == after["fancy"].run_hash

    metadata = fake_plugin / "fake_plugin-1.0.dist-info" / "METADATA"
    metadata.write_text(metadata.read_text().replace("Version: 1.0", "Version: 1.1"))
    plugin_path.use(fake_plugin)
    assert fancy_settings()["fancy"].run_hash != after["fancy"].run_hash


def test_settings_parsed_back_keep_the_identity_they_were_planned_with(fake_plugin):
    config = parse_config(config_with([{"name": "fancy", "learning_rate": 0.1}]))
    settings = run_settings(config, config.optimizers[0], 0.1)
    parsed = RunSettings.parse(settings.canonical_json())
    assert parsed.run_hash == settings.run_hash
    with pytest.raises(ConfigError, match="built-in optimizer"):
        OptimizerSettings.parse({"name": "sgd", "learning_rate": 0.1, "plugin": settings.optimizer.plugin.as_dict()})


def test_the_registry_imports_neither_tensorflow_nor_plugins(fake_plugin):
    code = (
        "import sys; from tasks.core import registry; names = registry.optimizer_names(); "
        "print('fancy' in names, 'tensorflow' in sys.modules, 'fake_plugin' in sys.modules)"
    )
    env = {"PYTHONPATH": f"{REPO_ROOT}:{fake_plugin}"}
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.split() == ["True", "False", "False"]
    assert plugins.GROUP == "fmnist_pipeline.optimizers"


def test_a_config_hash_covers_its_plugins_and_is_unchanged_for_built_ins(fake_plugin):
    import hashlib

    from tasks.core.experiment import config_hash

    built_in = parse_config(config_with([{"name": "sgd", "learning_rate": 0.1}]))
    # main's formula before plugins (and before schedules, whose constant default is left out of the hash)
    dumped = built_in.model_dump_json(exclude={"optimizers": {0: {"schedule"}}})
    before_plugins = hashlib.sha256(dumped.encode()).hexdigest()[:10]
    assert config_hash(built_in) == before_plugins
    with_plugin = parse_config(config_with([{"name": "fancy", "learning_rate": 0.1}]))
    first = config_hash(with_plugin)
    (fake_plugin / "fake_plugin" / "opt.py").write_text(GOOD + "\n# edited\n")
    assert config_hash(with_plugin) != first


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ("    raise ValueError('no such beta')", "raised ValueError while building its optimizer: no such beta"),
        ("    return object()", "returned object, expected a tf.compat.v1.train.Optimizer"),
    ],
)
def test_a_factory_that_raises_or_returns_no_optimizer_is_a_training_error_naming_plugin_and_file(
    tmp_path, plugin_path, body, problem
):
    from tasks.core.errors import TrainingError
    from tasks.training.optimizers import make_optimizer

    source = f"def factory(learning_rate, *, beta=0.9):\n{body}\n"
    site = write_distribution(
        tmp_path / "site", "fake-plugin", {"fancy": "fake_plugin:factory"}, {"fake_plugin/__init__.py": source}
    )
    plugin_path.use(site)
    settings = OptimizerSettings.parse({"name": "fancy", "learning_rate": 0.1})
    with pytest.raises(TrainingError) as caught:
        make_optimizer(settings)
    message = str(caught.value)
    assert f"optimizer plugin 'fancy' (distribution fake-plugin 1.0, {site / 'fake_plugin' / '__init__.py'})" in message
    assert problem in message


def test_a_plugin_changed_after_planning_or_after_import_is_refused_at_build_time(fake_plugin, plugin_path):
    from tasks.core.errors import TrainingError
    from tasks.training.optimizers import make_optimizer

    settings = OptimizerSettings.parse({"name": "fancy", "learning_rate": 0.1})
    make_optimizer(settings)
    (fake_plugin / "fake_plugin" / "opt.py").write_text(GOOD + "\n# edited after planning\n")
    # This process still holds the old module: the edited code is not what would run.
    with pytest.raises(TrainingError, match="its source changed after this process imported it"):
        make_optimizer(OptimizerSettings.parse({"name": "fancy", "learning_rate": 0.1}))
    for name in [name for name in sys.modules if name.startswith("fake_plugin")]:
        del sys.modules[name]  # a fresh import, as in a new process
    make_optimizer(OptimizerSettings.parse({"name": "fancy", "learning_rate": 0.1}))
    with pytest.raises(TrainingError, match="the plugin changed since: rerun the command"):
        make_optimizer(settings)
