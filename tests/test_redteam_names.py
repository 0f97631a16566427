"""Red team 4: two config files with one `experiment:` name are refused (their reports and nightly history
are named by the experiment), naming both files; the same file under two spellings is one config."""

from __future__ import annotations

import datetime as dt
import json
import os

import luigi
import pytest
import yaml

from pipeline import FullReport
from pipeline.nightly import NightlyHistory, NightlyReport
from pipeline.reporting import ExperimentReport
from tasks.core.errors import ConfigError
from tests.conftest import REPO_ROOT

SMOKE = REPO_ROOT / "configs" / "smoke.yaml"
DATE = dt.date(2026, 12, 2)


@pytest.fixture
def two_configs(tmp_path):
    """(first.yaml, second.yaml): both `experiment: smoke`, different learning rates."""
    raw = yaml.safe_load(SMOKE.read_text())
    first, second = tmp_path / "first.yaml", tmp_path / "second.yaml"
    first.write_text(yaml.safe_dump(raw))
    raw["optimizers"][0]["learning_rate"] = 0.05
    second.write_text(yaml.safe_dump(raw))
    return first, second


def _refusal(task) -> str:
    with pytest.raises(ConfigError) as caught:
        task.complete()
    return str(caught.value)


@pytest.mark.parametrize(
    "task_of",
    [
        lambda config: ExperimentReport(config=config, date=DATE),
        lambda config: NightlyReport(config=config, date=DATE),
        lambda config: NightlyHistory(config=config, date=DATE),
    ],
    ids=["FullReport", "NightlyReport", "NightlyHistory"],
)
def test_the_second_config_of_a_name_is_refused_naming_both_files(site, two_configs, task_of):
    first, second = two_configs
    assert task_of(str(first)).complete() is False  # the first owns the name
    message = _refusal(task_of(str(second)))
    assert str(second) in message and str(first.resolve()) in message and "'smoke'" in message, message
    owner = json.loads((site / "reports" / "smoke" / "owner.json").read_text())
    assert owner["config"] == str(first.resolve())


def test_a_refused_nightly_trains_nothing_and_its_full_report_fails_scheduling(site, two_configs, ran_tasks):
    first, second = two_configs
    assert ExperimentReport(config=str(first), date=DATE).complete() is False
    for task in (NightlyReport(config=str(second), date=DATE), FullReport(config=str(second), date=DATE)):
        result = luigi.build([task], local_scheduler=True, detailed_summary=True, log_level="CRITICAL")
        assert not result.scheduling_succeeded
    assert ran_tasks.tasks == []


def test_one_file_under_two_spellings_is_one_config(site, two_configs, monkeypatch):
    first, _ = two_configs
    monkeypatch.chdir(first.parent)
    assert ExperimentReport(config="first.yaml", date=DATE).complete() is False
    assert ExperimentReport(config=f".{os.sep}first.yaml", date=DATE).complete() is False
    assert ExperimentReport(config=str(first), date=DATE).complete() is False


def test_a_deleted_or_renamed_owner_hands_the_name_over(site, two_configs):
    first, second = two_configs
    assert ExperimentReport(config=str(first), date=DATE).complete() is False
    _refusal(ExperimentReport(config=str(second), date=DATE))
    raw = yaml.safe_load(first.read_text())
    first.write_text(yaml.safe_dump(raw | {"experiment": "renamed"}))
    assert ExperimentReport(config=str(second), date=DATE).complete() is False
    owner = json.loads((site / "reports" / "smoke" / "owner.json").read_text())
    assert owner["config"] == str(second.resolve())
    first.unlink()
    assert NightlyReport(config=str(second), date=DATE).complete() is False


def test_where_names_the_owner_instead_of_pointing_at_its_report(site, two_configs, capsys):
    from pipeline.where import main as where

    first, second = two_configs
    assert ExperimentReport(config=str(first), date=DATE).complete() is False  # the first owns the name
    # A copy of the owner with the same content has the same config hash: where must still not send its
    # user to the owner's report folder, nor record a new owner (it only reads).
    second.write_text(first.read_text())
    assert where(["report", "--config", str(second), "--date", DATE.isoformat()]) == 2
    error = capsys.readouterr().err
    assert "already belongs to the config" in error and str(first.resolve()) in error, error
    owner = json.loads((site / "reports" / "smoke" / "owner.json").read_text())
    assert owner["config"] == str(first.resolve())
    assert where(["report", "--config", str(first), "--date", DATE.isoformat()]) == 1  # not built yet
    assert "no finished report" in capsys.readouterr().err
