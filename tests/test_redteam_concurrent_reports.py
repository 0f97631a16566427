"""Red team 5: two report builds of one folder at once (config paths `x.yaml` and `./x.yaml`: two Luigi
tasks) do not break each other. Two real processes; the first is held inside its build by a failpoint
that waits for a file, and the second is seen waiting for the folder's lock (its own log line)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import REPO_ROOT
from tests.killcheck import temp_files

DATE = "2026-12-02"
CHILD = """
import datetime, sys, time
from pathlib import Path
import luigi.configuration
root, config, work, hold, date = sys.argv[1:6]
luigi.configuration.get_config().set("pipeline", "artifacts_root", root)
import tasks.reporting.report as report
from pipeline.reporting import ExperimentReport, publish_once, report_record
from tasks.core.experiment import load_experiment
from tests.report_fixtures import build_kwargs, write_scenario, write_test_arrow

work = Path(work)
test_arrow = write_test_arrow(work / "test.arrow")
runs = write_scenario(work / "runs", test_arrow)
task = ExperimentReport(config=config, date=datetime.date.fromisoformat(date))
if hold != "-":
    real = report.crash_point
    def held(name):  # stop between the figures and report.json until the test removes `hold`
        if name == "report.figures-written":
            Path(hold + ".reached").touch()
            while Path(hold).exists():
                time.sleep(0.01)
        real(name)
    report.crash_point = held
folder = Path(task.output().path).parent
record = report_record(config, load_experiment(config)[0], {})
built = publish_once(task, lambda: report.publish_report(folder, record, **build_kwargs(work, runs, test_arrow)))
print("built" if built else "found finished", flush=True)
"""


def _start(root: Path, config: str, work: Path, hold: str, cwd: Path) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, str(root), config, str(work), hold, DATE],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_for(path: Path, process: subprocess.Popen, timeout: float = 120) -> None:
    """Until `path` exists (an event the child makes), failing at once if the child ended first."""
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.01)


def test_two_builds_of_one_report_folder_at_once_both_succeed(tmp_path):
    root = tmp_path / "artifacts"
    configs = tmp_path / "configs"
    configs.mkdir()
    shutil.copy(REPO_ROOT / "configs" / "smoke.yaml", configs / "x.yaml")
    hold = tmp_path / "hold"
    hold.touch()
    first = _start(root, "x.yaml", tmp_path / "work-1", str(hold), configs)
    _wait_for(Path(f"{hold}.reached"), first)  # the first is inside its build, holding the lock

    second = _start(root, "./x.yaml", tmp_path / "work-2", "-", configs)
    # The second's own log line says it waits for the folder's lock; it must not build beside the first.
    # (read up to that line only: the second exits only after the first has finished)
    seen = []
    for line in second.stderr:
        seen.append(line)
        if "waiting for" in line and "report.json" in line:
            break
    else:
        raise AssertionError(f"the second build did not wait for the first's lock: {''.join(seen)}")
    hold.unlink()  # let the first finish

    out_first, err_first = first.communicate(timeout=120)
    out_second, err_second = second.communicate(timeout=120)
    assert first.returncode == 0, err_first
    assert second.returncode == 0, err_second
    assert out_first.strip() == "built" and out_second.strip() == "found finished"
    folder = root / "reports" / "smoke" / DATE
    from tasks.reporting.report import report_problem

    record = json.loads((folder / "report.json").read_text())
    assert report_problem(folder, record["config_hash"]) is None
    assert temp_files(root) == []
