"""Atomic storage: targets get the ordinary file mode; the sweep of killed writers' temp files; folders."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tasks.core import storage
from tasks.core.errors import StorageError
from tasks.core.storage import write_json_atomic
from tasks.data.arrays import write_indices


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


def test_finished_targets_have_the_mode_the_umask_gives(tmp_path):
    expected = 0o666 & ~_umask()  # 0644 under the usual umask 022; mkstemp alone would give 0600
    write_json_atomic(tmp_path / "a.json", {"x": 1})
    write_indices(tmp_path / "b.arrow", [1, 2])
    for name in ("a.json", "b.arrow"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == expected, name


def _dead_pid() -> int:
    """The pid of a process that has already ended (and been reaped)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_the_sweep_removes_every_dead_writers_temp_file_and_nothing_else(tmp_path):
    # Written from the mutation-testing survivors: a sweep that stopped at the first file that is not a
    # temp file, or that swept partial downloads or quarantined files, passed the other tests.
    dead = f"{storage.TEMP_MARKER}{storage.WRITER_ID}-{_dead_pid()}-abc"
    live = f"{storage.TEMP_MARKER}{storage.WRITER_ID}-{os.getpid()}-abc"
    nested = tmp_path / "runs" / "seed-0"
    nested.mkdir(parents=True)
    keep = [tmp_path / "a-report.json", tmp_path / f".b.json{live}", tmp_path / f".c.gz{dead}.part"]
    keep += [tmp_path / storage.QUARANTINE_DIR / f".d.json{dead}"]
    swept = [tmp_path / f".e.json{dead}", tmp_path / f".f.json{dead}", nested / f".g.json{dead}"]
    for path in keep + swept:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("x")
    old = tmp_path / f".h.json{storage.TEMP_MARKER}otherhost.1-2-abc"  # another host's: swept by age only
    old.write_text("x")
    os.utime(old, (time.time() - storage.FOREIGN_TEMP_SECONDS - 60,) * 2)

    removed = storage.sweep_temp_files(tmp_path)

    assert sorted(removed) == sorted([*swept, old])
    assert all(path.exists() for path in keep) and not any(path.exists() for path in swept)


def test_ensure_dir_makes_missing_parents_and_names_the_folder_it_cannot_make(tmp_path):
    deep = tmp_path / "a" / "b" / "c"
    assert storage.ensure_dir(deep) == deep and deep.is_dir()
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(StorageError, match=str(blocker / "sub")):
        storage.ensure_dir(blocker / "sub")


def test_a_durable_write_is_flushed_and_a_bookkeeping_write_is_not(tmp_path, monkeypatch):
    synced: list[str] = []
    monkeypatch.setattr(storage, "_fsync_file", lambda path: synced.append(f"file {Path(path).name}"))
    monkeypatch.setattr(storage, "_fsync_dir", lambda path: synced.append(f"dir {Path(path).name}"))
    storage.write_json_atomic(tmp_path / "kept.json", {"a": 1})
    assert synced[0].startswith("file .kept.json") and synced[1:] == [f"dir {tmp_path.name}"]
    synced.clear()
    storage.write_json_atomic(tmp_path / "notes.json", {"a": 1}, durable=False)
    assert synced == [] and json.loads((tmp_path / "notes.json").read_text()) == {"a": 1}


def test_a_run_flushes_its_results_but_not_its_attempt_log(tmp_path, monkeypatch):
    from tasks.training.runstate import AttemptLog

    synced: list[str] = []
    monkeypatch.setattr(storage, "_fsync_file", lambda path: synced.append(Path(path).name))
    monkeypatch.setattr(storage, "_fsync_dir", lambda path: None)
    AttemptLog(tmp_path / "attempts.json", [{"attempt": 1, "from_epoch": 0, "steps_run": 3}]).save()
    assert synced == [] and json.loads((tmp_path / "attempts.json").read_text())[0]["steps_run"] == 3
