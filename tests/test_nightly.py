"""Nightly retraining: dated runs and reports, the history dataset, the trend plot, regression alerts,
and RangeDaily backfill."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from pathlib import Path

import luigi
import pytest
import yaml
from luigi.tools.range import RangeDaily

from pipeline import NightlyReport
from tasks.reporting import history as nightly
from tests.conftest import REPO_ROOT, build

SMOKE = REPO_ROOT / "configs" / "smoke.yaml"
EXPERIMENT = "nightly-test"


@pytest.fixture
def nightly_config(tmp_path: Path) -> Path:
    """smoke.yaml cut to two optimizers and one epoch, with seeds derived from the date."""
    raw = yaml.safe_load(SMOKE.read_text())
    raw["experiment"] = EXPERIMENT
    raw["training"]["epochs"] = 1
    raw["optimizers"] = [entry for entry in raw["optimizers"] if entry["name"] in ("sgd", "adam")]
    # A threshold that seed-to-seed noise never crosses; the regression test tightens it.
    raw["nightly"] = {"seed_policy": "date", "regression_window": 3, "regression_threshold": 0.5}
    path = tmp_path / "nightly.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_regressions_compare_with_the_previous_nights_only():
    history = [
        {"date": "2026-01-01", "name": "adam", "test_accuracy_mean": 0.90},
        {"date": "2026-01-02", "name": "adam", "test_accuracy_mean": 0.80},
        {"date": "2026-01-03", "name": "adam", "test_accuracy_mean": 0.86},
        {"date": "2026-01-05", "name": "adam", "test_accuracy_mean": 0.10},  # a later night: never compared
        {"date": "2026-01-03", "name": "sgd", "test_accuracy_mean": 0.80},
    ]
    tonight = [
        {"name": "adam", "optimizer": "adam", "test_accuracy_mean": 0.79},
        {"name": "sgd", "optimizer": "sgd", "test_accuracy_mean": None},
        {"name": "new", "optimizer": "momentum", "test_accuracy_mean": 0.5},
    ]
    found = nightly.find_regressions(history, "2026-01-04", tonight, window=2, threshold=0.03)
    assert len(found) == 2  # "new" has no history to compare with
    adam, sgd = found
    # adam: the mean of the last 2 earlier nights is 0.83; 0.83 - 0.79 = 0.04 > 0.03.
    assert (adam.name, adam.optimizer, adam.tonight, adam.window_nights) == ("adam", "adam", 0.79, 2)
    assert adam.window_mean == pytest.approx(0.83) and adam.drop == pytest.approx(0.04)
    assert adam.message == (
        "adam (optimizer adam): test accuracy 0.7900 is 0.0400 below the mean 0.8300 of the previous 2 night(s) "
        "(threshold 0.0300)"
    )
    assert (sgd.tonight, sgd.drop, sgd.window_mean) == (None, None, 0.80)
    assert sgd.message.startswith("sgd (optimizer sgd): every run diverged tonight")
    assert nightly.find_regressions(history, "2026-01-04", tonight[:1], window=2, threshold=0.05) == []
    text = nightly.alert_text("2026-01-04", "configs/x.yaml", "x", found, Path("reports/x/report.html"))
    assert text.splitlines() == [
        "nightly 2026-01-04 of configs/x.yaml (experiment x): 2 regression(s)",
        f"- {adam.message}",
        f"- {sgd.message}",
        f"The report with the alert is at {Path.cwd() / 'reports/x/report.html'}",
    ]


def test_history_round_trip_and_rewrite_is_idempotent(tmp_path):
    row = {
        "name": "adam",
        "optimizer": "adam",
        "learning_rate": 0.001,
        "run_hash": "abc",
        "test_accuracy_mean": 0.8,
        "test_accuracy_std": None,
        "diverged_runs": 0,
        "total_runs": 1,
        "seconds_per_epoch": 1.5,
    }
    nightly.write_night(tmp_path, "2026-01-02", [row])
    nightly.write_night(tmp_path, "2026-01-01", [dict(row, test_accuracy_mean=0.7)])
    nightly.write_night(tmp_path, "2026-01-02", [dict(row, test_accuracy_mean=0.81)])
    history = nightly.read_history(tmp_path)
    assert [(r["date"], r["test_accuracy_mean"]) for r in history] == [("2026-01-01", 0.7), ("2026-01-02", 0.81)]
    assert nightly.trend_series(history) == (["2026-01-01", "2026-01-02"], {"adam": [0.7, 0.81]})
    with pytest.raises(ValueError):
        nightly.partition_dir(tmp_path, "../../etc")


def _night_dir(root: Path, date: str, experiment: str = EXPERIMENT) -> Path:
    return root / "reports" / experiment / "nightly" / date


def _history(root: Path, experiment: str = EXPERIMENT) -> Path:
    return root / "history" / experiment


def test_two_nights_then_a_regression(site, ran_tasks, nightly_config, tmp_path):
    first, second = dt.date(2026, 3, 1), dt.date(2026, 3, 2)
    build(
        [NightlyReport(date=first, config=str(nightly_config)), NightlyReport(date=second, config=str(nightly_config))]
    )
    assert ran_tasks.families().count("NightlyTrainRun") == 4  # 2 optimizers × 1 seed × 2 nights
    assert ran_tasks.families().count("VerifyData") == 2
    for night in (first, second):
        report = _night_dir(site, night.isoformat())
        assert (report / "report.json").is_file() and (report / "report.html").is_file()
        assert list((report / "figures").glob("extra-1-*.png")), "the trend plot is missing"
        assert (_history(site) / f"date={night.isoformat()}" / "summary.parquet").is_file()
        assert (site / "data" / "verified" / f"{night.isoformat()}.json").is_file()
    # Dated runs, and the 'date' seed policy gives each night its own seeds.
    seeds = {
        night: sorted(p.name for p in (site / "runs" / "nightly" / night).glob("*/seed-*"))
        for night in ("2026-03-01", "2026-03-02")
    }
    assert seeds["2026-03-01"] != seeds["2026-03-02"]

    ran_tasks.tasks.clear()
    build([NightlyReport(date=second, config=str(nightly_config))])
    assert ran_tasks.tasks == [], "a finished night is a no-op"

    # Doctor the last night to a perfect score (one synthetic image in ten is mislabelled, so tonight
    # scores at most about 0.9) and tighten the threshold: tonight is a drop. Run it from the command line.
    rows = nightly.read_history(_history(site))
    doctored = [dict(row, test_accuracy_mean=1.0) for row in rows if row["date"] == "2026-03-02"]
    nightly.write_night(_history(site), "2026-03-02", doctored)
    strict = yaml.safe_load(nightly_config.read_text())
    strict["nightly"].update(regression_window=1, regression_threshold=0.05)
    nightly_config.write_text(yaml.safe_dump(strict))
    cfg = tmp_path / "site.cfg"
    settings = luigi.configuration.get_config()
    cfg.write_text(
        "[pipeline]\n"
        + "".join(
            f"{key} = {settings.get('pipeline', key)}\n" for key in ("artifacts_root", "sources", "checksums_file")
        )
    )
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "luigi",
            "--module",
            "pipeline",
            "NightlyReport",
            "--date",
            "2026-03-03",
            "--config",
            str(nightly_config),
        ],
        cwd=REPO_ROOT,
        env=dict(os.environ, LUIGI_CONFIG_PATH=str(cfg)),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 30, done.stderr[-3000:]  # [retcode] task_failed
    assert "regression" in done.stderr and "below the mean 1.0000" in done.stderr
    report = _night_dir(site, "2026-03-03")
    html = (report / "report.html").read_text()
    assert html.index("below the mean 1.0000") < html.index("<table"), "the alert must be at the top"
    assert not (report / "report.json").exists(), "a night with an alert is not marked done"
    assert (_history(site) / "date=2026-03-03" / "summary.parquet").is_file()


def test_range_daily_backfills_two_nights(site, nightly_config):
    today = dt.date.today()
    start, stop = today - dt.timedelta(days=3), today - dt.timedelta(days=1)
    result = luigi.build(
        [RangeDaily(of=NightlyReport, start=start, stop=stop, of_params={"config": str(nightly_config)})],
        local_scheduler=True,
        detailed_summary=True,
        log_level="WARNING",
    )
    assert result.status.name == "SUCCESS", result.summary_text
    for offset in (3, 2):
        night = (today - dt.timedelta(days=offset)).isoformat()
        assert (_night_dir(site, night) / "report.json").is_file(), night
    assert not _night_dir(site, stop.isoformat()).exists()  # stop is exclusive


def test_two_configs_on_one_night_are_independent(site, nightly_config, tmp_path):
    other = tmp_path / "other.yaml"
    raw = yaml.safe_load(nightly_config.read_text())
    raw["experiment"] = "other-test"
    other.write_text(yaml.safe_dump(raw))
    night = dt.date(2026, 4, 1)
    build([NightlyReport(date=night, config=str(nightly_config))])
    # The first config's night being done must not make the other's look done.
    assert not NightlyReport(date=night, config=str(other)).complete()
    build([NightlyReport(date=night, config=str(other))])
    for experiment in (EXPERIMENT, "other-test"):
        assert (_night_dir(site, night.isoformat(), experiment) / "report.json").is_file()
        assert [row["date"] for row in nightly.read_history(_history(site, experiment))] == ["2026-04-01"] * 2
    assert not (site / "reports" / "nightly").exists() and not (site / "history" / "date=2026-04-01").exists()


def _trend_png(root: Path, night: str) -> bytes:
    (png,) = (_night_dir(root, night) / "figures").glob("extra-1-*.png")
    return png.read_bytes()


def test_a_backfill_gives_the_same_reports_as_nights_run_in_order(
    site, tmp_path, synthetic_raw, nightly_config, ran_tasks
):
    """`site` restores the [pipeline] settings that this test points at two roots in turn."""
    first, second = dt.date(2026, 5, 1), dt.date(2026, 5, 2)
    config, since = str(nightly_config), first.isoformat()
    raw, checksums = synthetic_raw
    roots = {}
    for label in ("in-order", "backfill"):
        root = roots[label] = tmp_path / label
        pipeline_config = luigi.configuration.get_config()
        for key, value in (
            ("artifacts_root", str(root)),
            ("sources", f'["{raw}"]'),
            ("checksums_file", str(checksums)),
        ):
            pipeline_config.set("pipeline", key, value)
        if label == "in-order":
            build([NightlyReport(date=first, config=config)])
            build([NightlyReport(date=second, config=config)])
        else:
            ran_tasks.tasks.clear()
            # The later night is asked for first: with `since`, it still waits for the earlier night's history.
            build(
                [
                    NightlyReport(date=second, config=config, since=since),
                    NightlyReport(date=first, config=config, since=since),
                ]
            )
            # run() starts again after its dynamic dependencies: keep the first start of each night.
            order = list(dict.fromkeys(task.date for task in ran_tasks.tasks if task.task_family == "NightlyHistory"))
            assert order == [first, second]
    for night in (first, second):
        assert _trend_png(roots["in-order"], night.isoformat()) == _trend_png(roots["backfill"], night.isoformat())
    history = nightly.read_history(_history(roots["backfill"]))
    assert sorted({row["date"] for row in history}) == [first.isoformat(), second.isoformat()]
