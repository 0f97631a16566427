"""Shared fixtures: a synthetic dataset, a temp artifacts root wired into luigi's config, and a
recorder of which Luigi tasks actually ran."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import luigi
import luigi.configuration
import pytest

from tests import synthetic
from tests.browser import CHROMEDRIVER, CHROMIUM, chromium_flags

REPO_ROOT = Path(__file__).resolve().parents[1]
REAL_DATA_DIR = Path("/usr/share/datasets/fashion-mnist")
NEEDS_CHROMIUM = pytest.mark.skipif(
    not (CHROMIUM.is_file() and CHROMEDRIVER.is_file()),
    reason="headless Chromium needs /usr/bin/chromium and /usr/bin/chromedriver: "
    "apt-get install chromium chromium-driver (make test installs them when run as root: scripts/system_packages.sh)",
)

# Enough rows for smoke.yaml's split (100 validation rows per class) and still tiny.
SYNTHETIC_TRAIN_ROWS = 2000
SYNTHETIC_TEST_ROWS = 500

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# Fixtures shared by the fetch tests (payloads, sources, a real HTTP server).
pytest_plugins = ["tests.fetchkit"]


def pytest_addoption(parser):
    parser.addoption(
        "--no-skips",
        action="store_true",
        help="count a skipped test as failed (make test and CI: a skip there hides a missing install step)",
    )


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.skipped and item.config.getoption("--no-skips") and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = f"skipped under --no-skips (make test runs every test): {reason}"


@pytest.fixture
def synthetic_raw(tmp_path: Path) -> tuple[Path, Path]:
    """(a folder holding the four synthetic .gz files, the checksums file that trusts them)."""
    raw = tmp_path / "source"
    checksums = synthetic.write_raw_dir(raw, train_count=SYNTHETIC_TRAIN_ROWS, test_count=SYNTHETIC_TEST_ROWS)
    return raw, synthetic.write_checksums_file(tmp_path / "checksums.json", checksums)


@pytest.fixture
def site(tmp_path: Path, synthetic_raw):
    """Point `[pipeline]` at a temp artifacts root and the synthetic source; undo it afterwards."""
    raw, checksums = synthetic_raw
    values = {
        "artifacts_root": str(tmp_path / "artifacts"),
        "sources": f'["{raw}"]',
        "checksums_file": str(checksums),
        "intra_op_threads": "1",
        "inter_op_threads": "1",
    }
    config = luigi.configuration.get_config()
    saved = {key: config.get("pipeline", key, None) for key in values}
    for key, value in values.items():
        config.set("pipeline", key, value)
    yield tmp_path / "artifacts"
    for key, value in saved.items():
        if value is None:
            config.remove_option("pipeline", key)
        else:
            config.set("pipeline", key, value)


class RanTasks:
    """Records the task ids whose run() started, through Luigi's START event."""

    def __init__(self):
        self.tasks: list[luigi.Task] = []

    def families(self) -> list[str]:
        return sorted(task.task_family for task in self.tasks)


@pytest.fixture
def ran_tasks():
    recorder = RanTasks()

    def on_start(task):
        recorder.tasks.append(task)

    luigi.Task.event_handler(luigi.Event.START)(on_start)
    yield recorder
    luigi.Task._event_callbacks[luigi.Task][luigi.Event.START].discard(on_start)


@pytest.fixture
def failures():
    """The exceptions of the Luigi tasks that fail in-process, through Luigi's FAILURE event.

    Luigi's own log is no place to look for them: its logger is configured once per process, so what
    reaches caplog depends on which test ran first in the worker.
    """
    seen: list[tuple[luigi.Task, BaseException]] = []

    def on_failure(task, exception):
        seen.append((task, exception))

    luigi.Task.event_handler(luigi.Event.FAILURE)(on_failure)
    yield seen
    luigi.Task._event_callbacks[luigi.Task][luigi.Event.FAILURE].discard(on_failure)


def build(tasks, workers: int = 1) -> luigi.execution_summary.LuigiRunResult:
    """Run `tasks` in-process on the local scheduler; fail the test on any task failure."""
    result = luigi.build(tasks, local_scheduler=True, workers=workers, detailed_summary=True, log_level="WARNING")
    assert result.scheduling_succeeded, result.summary_text
    assert result.status.name in ("SUCCESS", "SUCCESS_WITH_RETRY"), result.summary_text
    return result


@pytest.fixture
def chromium(tmp_path):
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed: pip install -e .[test]")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in chromium_flags(tmp_path / "chromium-profile", "1280,1600"):
        options.add_argument(flag)
    # An explicit driver path keeps Selenium Manager from trying to download one.
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def site_cfg_beside(root: Path, cfg: Path) -> Path:
    """Write `cfg`: the current site's data sources and checksums, with `root` as the artifacts root (a second
    root for a child process, e.g. one to be killed and compared with the in-process reference)."""
    pipeline = luigi.configuration.get_config()
    cfg.write_text(
        f"[pipeline]\nartifacts_root = {root}\nsources = {pipeline.get('pipeline', 'sources')}\n"
        f"checksums_file = {pipeline.get('pipeline', 'checksums_file')}\n"
    )
    return cfg


def luigi_cli(args: list[str], cfg: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    """`luigi --module pipeline <args>` from the repo root, with LUIGI_CONFIG_PATH pointing at `cfg`."""
    env = dict(os.environ, LUIGI_CONFIG_PATH=str(cfg), TF_CPP_MIN_LOG_LEVEL="2")
    return subprocess.run(
        [sys.executable, "-m", "luigi", "--module", "pipeline", *args],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
