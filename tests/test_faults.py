"""The pieces the kill-anywhere harness relies on, each fast: failpoints (a SIGKILL in a child process, an
in-process stop), the sweep of killed writers' temp files, and the temp-file names of atomic writes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import luigi
import pytest

from pipeline import FetchFile
from tasks.core import faults
from tasks.core.storage import QUARANTINE_DIR, TEMP_MARKER, WRITER_ID, atomic_open, sweep_temp_files
from tests import synthetic
from tests.conftest import REPO_ROOT, build


def test_crash_point_kills_on_the_chosen_hit_and_only_there(tmp_path):
    program = (
        "from tasks.core.faults import crash_point\n"
        "for i in range(4):\n    crash_point('a.b')\n    print(i, flush=True)\n"
    )
    env = dict(os.environ, **{faults.ENV_VAR: "a.b:3"})
    killed = subprocess.run([sys.executable, "-c", program], cwd=REPO_ROOT, env=env, capture_output=True, text=True)
    assert killed.returncode == -signal.SIGKILL and killed.stdout.split() == ["0", "1"]
    env[faults.ENV_VAR] = "other.point"
    spared = subprocess.run([sys.executable, "-c", program], cwd=REPO_ROOT, env=env, capture_output=True, text=True)
    assert spared.returncode == 0 and spared.stdout.split() == ["0", "1", "2", "3"]


def test_stop_at_raises_in_process_on_the_chosen_hit_only_inside_its_block(monkeypatch):
    monkeypatch.delenv(faults.ENV_VAR, raising=False)
    reached = []
    with pytest.raises(faults.FailpointStop, match=r"a\.b"), faults.stop_at("a.b", 3):
        for hit in range(1, 5):
            faults.crash_point("other.point")
            faults.crash_point("a.b")
            reached.append(hit)
    assert reached == [1, 2]
    faults.crash_point("a.b")  # disarmed once the block is left
    with pytest.raises(ValueError, match="occurrence >= 1"), faults.stop_at("a.b", 0):
        pass


def test_an_unset_crash_point_costs_nothing_measurable(monkeypatch):
    monkeypatch.delenv(faults.ENV_VAR, raising=False)
    calls = 100_000
    started = time.perf_counter()
    for _ in range(calls):
        faults.crash_point("train.mid-epoch")
    assert (time.perf_counter() - started) / calls < 10e-6  # a loaded 2-core machine does it in < 1 µs


def _dead_pid() -> int:
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


def test_the_sweep_removes_only_temp_files_of_dead_or_long_gone_writers(tmp_path):
    old = time.time() - 2 * 3600
    files = {
        "dead": f".run.json{TEMP_MARKER}{WRITER_ID}-{_dead_pid()}-abcd1234",
        "alive": f".run.json{TEMP_MARKER}{WRITER_ID}-{os.getpid()}-abcd1234",
        "foreign_fresh": f".run.json{TEMP_MARKER}otherhost.1-{_dead_pid()}-abcd1234",
        "foreign_old": f".metrics.parquet{TEMP_MARKER}otherhost.1-77-abcd1234.parquet",
        "legacy_old": f".latest.json{TEMP_MARKER}k2j3h4m5",  # the skeleton's names: mkstemp's 8 characters, no pid
        "part": "train-images-idx3-ubyte.gz.part",
        "target": "run.json",
    }
    for key, name in files.items():
        (tmp_path / name).write_text(key)
    for key in ("foreign_old", "legacy_old", "part", "target"):
        os.utime(tmp_path / files[key], (old, old))
    quarantined = tmp_path / QUARANTINE_DIR / f".x{TEMP_MARKER}{WRITER_ID}-{_dead_pid()}-abcd1234"
    quarantined.parent.mkdir()
    quarantined.write_text("evidence")
    os.utime(quarantined, (old, old))
    folder_with_marker = tmp_path / f".folder{TEMP_MARKER}{WRITER_ID}-{_dead_pid()}-x"
    folder_with_marker.mkdir()

    removed = sweep_temp_files(tmp_path)

    assert sorted(path.name for path in removed) == sorted(files[key] for key in ("dead", "foreign_old", "legacy_old"))
    for key in ("alive", "foreign_fresh", "part", "target"):
        assert (tmp_path / files[key]).read_text() == key
    assert quarantined.exists() and folder_with_marker.is_dir()


def test_atomic_writes_name_their_writer_and_leave_no_temp_file(tmp_path):
    seen = []
    with pytest.raises(RuntimeError):
        with atomic_open(tmp_path / "x.json", "w") as handle:
            seen.append(Path(handle.name).name)
            raise RuntimeError("the writer fails half-way")
    assert seen[0].startswith(f".x.json{TEMP_MARKER}{WRITER_ID}-{os.getpid()}-")
    assert list(tmp_path.iterdir()) == []


def test_a_task_sweeps_its_output_folder_before_it_runs(site):
    raw_dir = site / "data" / "raw"
    raw_dir.mkdir(parents=True)
    leftover = raw_dir / f".{synthetic.TRAIN_LABELS}.json{TEMP_MARKER}{WRITER_ID}-{_dead_pid()}-abcd1234"
    leftover.write_text('{"name": ')
    part = raw_dir / f"{synthetic.TEST_IMAGES}.part"
    part.write_bytes(b"\x1f\x8b partial download, resumed later")
    build([FetchFile(name=synthetic.TRAIN_LABELS)])
    assert not leftover.exists()
    assert part.read_bytes() == b"\x1f\x8b partial download, resumed later"
    assert (raw_dir / synthetic.TRAIN_LABELS).is_file()
    assert not luigi.LocalTarget(str(raw_dir / synthetic.TEST_IMAGES)).exists()
