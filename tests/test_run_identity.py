"""A run's identity: short task parameters, the settings hidden and checked against the hash."""

from __future__ import annotations

import datetime as dt
import json

import pytest
import yaml

from pipeline import EvaluateRun, NightlyTrainRun, TrainRun
from tasks.core.config import parse_config
from tasks.core.errors import ConfigError
from tasks.core.runs import RunSettings, expand_runs, run_settings
from tests.conftest import REPO_ROOT, build, luigi_cli

SMOKE = yaml.safe_load((REPO_ROOT / "configs" / "smoke.yaml").read_text())


def _spec(name: str = "adam"):
    return next(spec for spec in expand_runs(parse_config(SMOKE)) if spec.name == name)


def test_a_run_reads_as_name_hash_seed_and_learning_rate():
    spec = _spec()
    task = TrainRun.of(spec)
    assert str(task) == f"TrainRun(name=adam, run_hash={spec.run_hash}, seed=0, learning_rate=0.001)"
    # Luigi's task id shows the same short values; the settings are neither in it nor public.
    assert spec.run_hash in task.task_id and "schema_version" not in task.task_id
    assert "settings" not in task.to_str_params(only_significant=True, only_public=True)
    assert len(repr(EvaluateRun.of(spec))) < 120
    nightly = NightlyTrainRun.of(spec, date=dt.date(2026, 3, 1))
    assert "date=2026-03-01" in str(nightly) and "nightly/2026-03-01" in str(nightly.run_dir)


def test_the_settings_are_validated_once_and_frozen():
    settings = _spec().settings
    assert isinstance(settings, RunSettings)
    with pytest.raises(Exception, match="frozen"):
        settings.schema_version = 3
    again = RunSettings.parse(settings.canonical_json())
    assert again == settings and again.run_hash == settings.run_hash and hash(again) == hash(settings)
    bad = settings.as_dict() | {"optimizer": {"name": "adam", "learning_rate": -1.0, "params": {}}}
    with pytest.raises(ConfigError, match="optimizer.learning_rate"):
        RunSettings.parse(bad)


def test_the_hash_name_seed_and_learning_rate_must_agree_with_the_settings():
    spec = _spec()
    other = run_settings(parse_config(SMOKE), parse_config(SMOKE).optimizers[0], 0.5)
    cases = {
        "--run-hash 0123456789 does not match": dict(run_hash="0123456789"),
        "--learning-rate 0.5 differs": dict(learning_rate=0.5),
        "not safe as a folder name": dict(name="../../../../x"),
        "--seed expected": dict(seed=-1),
        "does not match the settings' hash": dict(settings=other),
    }
    for expected, change in cases.items():
        params = dict(name=spec.name, run_hash=spec.run_hash, seed=0, learning_rate=0.001, settings=spec.settings)
        task = TrainRun(**(params | change))
        with pytest.raises(ConfigError, match=expected):
            task.output()


def test_a_path_escaping_name_on_the_command_line_writes_nothing(tmp_path):
    spec = _spec()
    root = tmp_path / "a" / "b" / "c" / "artifacts"  # deep enough that an escape would still land in tmp_path
    site = tmp_path / "site.cfg"
    site.write_text(f"[pipeline]\nartifacts_root = {root}\n")
    base = ["--run-hash", spec.run_hash, "--seed", "0", "--learning-rate", "0.001"]
    for task, name in (("TrainRun", "../../../../x"), ("EvaluateRun", "adam\n")):
        done = luigi_cli([task, "--name", name, *base, "--settings", spec.settings.canonical_json()], site, 120)
        assert done.returncode == 35, done.stderr[-2000:]  # [retcode] scheduling_error
        assert "ConfigError" in done.stderr and "not safe as a folder name" in done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["site.cfg"]


def test_a_finished_run_that_lost_its_metrics_is_not_complete_and_trains_again(site):
    raw = dict(SMOKE, training={"epochs": 1, "batch_size": 64})
    spec = next(s for s in expand_runs(parse_config(raw)) if s.name == "sgd")
    task = TrainRun.of(spec)
    build([EvaluateRun.of(spec)])
    metrics = task.run_dir / "metrics.parquet"
    first = task.folder.metrics()
    weights = json.loads((task.run_dir / "run.json").read_text())["weights_sha256"]
    metrics.unlink()
    assert not task.complete() and (task.run_dir / "run.json").exists()
    assert not EvaluateRun.of(spec).complete(), "an evaluation stands only while its run does"
    build([EvaluateRun.of(spec)])
    assert task.complete() and task.folder.metrics()["val_accuracy"].tolist() == first["val_accuracy"].tolist()
    assert json.loads((task.run_dir / "run.json").read_text())["weights_sha256"] == weights
