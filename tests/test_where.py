"""`python -m pipeline.where report`: bad input gets the project's own error, never a traceback, and a path
outside the artifacts root is never printed (red teams 3 and 11)."""

from __future__ import annotations

import json

import pytest

from pipeline import where
from tasks.core.experiment import config_hash, load_experiment
from tests.conftest import REPO_ROOT

SMOKE = str(REPO_ROOT / "configs" / "smoke.yaml")


@pytest.mark.parametrize("date", ["2026-13-45", "yesterday", "2026-02-30", "../../etc"])
def test_a_bad_date_is_an_error_that_names_the_option(site, capsys, date):
    assert where.main(["report", "--config", SMOKE, "--date", date]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.strip() == f"error: --date: expected a date YYYY-MM-DD, found {date!r}"


def test_a_report_folder_that_is_a_link_is_refused_not_printed(site, capsys, tmp_path):
    outside = tmp_path / "outside" / "2026-12-02"
    outside.mkdir(parents=True)
    (outside / "report.html").write_text("<html>someone else's</html>")
    (site / "reports").mkdir(parents=True)
    (site / "reports" / "smoke").symlink_to(outside.parent, target_is_directory=True)

    assert where.main(["report", "--config", SMOKE, "--date", "2026-12-02"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and str(outside.parent) not in out
    assert err.startswith(f"error: {site / 'reports' / 'smoke'} is a symbolic link (to {outside.parent})"), err


def test_a_finished_report_is_printed(site, capsys):
    folder = site / "reports" / "smoke" / "2026-12-02"
    folder.mkdir(parents=True)
    (folder / "report.html").write_text("<html></html>")
    (folder / "report.json").write_text(json.dumps({"config_hash": config_hash(load_experiment(SMOKE)[0])}))
    assert where.main(["report", "--config", SMOKE, "--date", "2026-12-02"]) == 0
    assert capsys.readouterr().out == f"report: {(folder / 'report.html').resolve()}\n"
