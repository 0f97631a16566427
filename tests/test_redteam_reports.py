"""Red team 9: a report folder missing report.html or a figure is not finished, for FullReport and
pipeline.where alike (no loop where one says "run FullReport" and the other does nothing)."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from pipeline import where
from pipeline.reporting import ExperimentReport, report_record
from pipeline.site import layout
from tasks.core.experiment import config_hash, load_experiment
from tasks.reporting.report import FILES_KEY, REPORT_JSON, publish_report
from tests.conftest import REPO_ROOT
from tests.report_fixtures import build_kwargs, write_scenario, write_test_arrow

SMOKE = str(REPO_ROOT / "configs" / "smoke.yaml")
DATE = dt.date(2026, 12, 2)


@pytest.fixture
def published(site, tmp_path) -> Path:
    """A finished report of smoke.yaml in its dated folder, built by publish_report from fake runs."""
    test_arrow = write_test_arrow(tmp_path / "test.arrow")
    runs = write_scenario(tmp_path / "runs", test_arrow)
    config = load_experiment(SMOKE)[0]
    folder = layout().report_dir(config.experiment, DATE.isoformat())
    publish_report(folder, report_record(SMOKE, config, {}), **build_kwargs(tmp_path, runs, test_arrow))
    return folder


def _finished(capsys) -> tuple[bool, int, str]:
    """(ExperimentReport.complete(), pipeline.where's exit status, its stderr)."""
    complete = ExperimentReport(config=SMOKE, date=DATE).complete()
    status = where.main(["report", "--config", SMOKE, "--date", DATE.isoformat()])
    return complete, status, capsys.readouterr().err


def test_report_json_vouches_for_every_file_by_its_sha256(published, capsys):
    files = json.loads((published / REPORT_JSON).read_text())[FILES_KEY]
    figures = sorted(path.name for path in (published / "figures").glob("*.png"))
    assert len(figures) >= 5
    assert sorted(files) == sorted(["report.html", "report.md", "summary.parquet", *(f"figures/{n}" for n in figures)])
    assert _finished(capsys) == (True, 0, "")


@pytest.mark.parametrize("victim", ["report.html", "report.md", "summary.parquet", "figures/forest_plot.png"])
def test_a_deleted_file_makes_the_report_unfinished_for_both(published, capsys, victim):
    (published / victim).unlink()
    complete, status, err = _finished(capsys)
    assert not complete and status == 1
    assert f"{published / victim} not found" in err and "FullReport" in err, err


def test_an_edited_figure_makes_the_report_unfinished_for_both(published, capsys):
    figure = published / "figures" / "test_accuracy.png"
    figure.write_bytes(figure.read_bytes() + b"\0")
    complete, status, err = _finished(capsys)
    assert not complete and status == 1
    assert "sha256 differs" in err and str(figure) in err, err


def test_a_report_json_from_before_the_hashes_stays_finished_while_report_html_is_there(published, capsys):
    record = json.loads((published / REPORT_JSON).read_text())
    del record[FILES_KEY]
    (published / REPORT_JSON).write_text(json.dumps(record))
    assert _finished(capsys) == (True, 0, "")
    (published / "report.html").unlink()
    assert _finished(capsys)[:2] == (False, 1)


def test_a_report_of_another_config_hash_is_unfinished(published, capsys):
    record = json.loads((published / REPORT_JSON).read_text())
    assert record["config_hash"] == config_hash(load_experiment(SMOKE)[0])
    (published / REPORT_JSON).write_text(json.dumps(record | {"config_hash": "0" * 16}))
    complete, status, err = _finished(capsys)
    assert not complete and status == 1 and "expected the report of config hash" in err
