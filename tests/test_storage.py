"""Atomic storage: targets get the ordinary file mode; the sweep of killed writers' temp files; folders."""

from __future__ import annotations

import errno
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

REPO = Path(__file__).resolve().parents[1]


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
    dead = f"{storage.TEMP_MARKER}{storage.WRITER_ID}-{_dead_pid()}-abcd1234"
    live = f"{storage.TEMP_MARKER}{storage.WRITER_ID}-{os.getpid()}-abcd1234"
    nested = tmp_path / "runs" / "seed-0"
    nested.mkdir(parents=True)
    keep = [tmp_path / "a-report.json", tmp_path / f".b.json{live}", tmp_path / f".c.gz{dead}.part"]
    keep += [tmp_path / storage.QUARANTINE_DIR / f".d.json{dead}"]
    swept = [tmp_path / f".e.json{dead}", tmp_path / f".f.json{dead}", nested / f".g.json{dead}"]
    for path in keep + swept:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("x")
    old = tmp_path / f".h.json{storage.TEMP_MARKER}otherhost.1-2-abcd1234"  # another host's, unlocked and old
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


def _temp_name(target: str, writer: str, pid: int, suffix: str = "") -> str:
    """A temp file name exactly as atomic_path makes one (mkstemp adds 8 random characters)."""
    return f".{target}{storage.TEMP_MARKER}{writer}-{pid}-abcd1234{suffix}"


def test_the_sweep_never_takes_a_finished_file_whose_name_merely_contains_the_marker(tmp_path):
    # Red team 6: an entry named `sgd.tmp-v2` lost its tuning record an hour after it was written, because
    # the sweep took any hour-old file with `.tmp-` in its name. Only the exact temp-name pattern is swept.
    old = time.time() - 2 * storage.FOREIGN_TEMP_SECONDS
    finished = [
        tmp_path / "tuning" / "sgd.tmp-v2-0123456789.json",
        tmp_path / "tuning" / ".sgd.tmp-v2-0123456789.json.lock",
        tmp_path / "backup.tmp-2024.tar",
        tmp_path / f"notes{storage.TEMP_MARKER}{storage.WRITER_ID}-{_dead_pid()}-abcd1234",  # no leading dot
        tmp_path / f".x.json{storage.TEMP_MARKER}otherhost.1-12-abc",  # not mkstemp's 8 random characters
        tmp_path / f".x.json{storage.TEMP_MARKER}otherhost.1-12-abcd1234.tar.gz",  # no writer's suffix
    ]
    leftover = tmp_path / "tuning" / _temp_name("sgd-0123456789.json", "otherhost.1", 12)
    for path in [*finished, leftover]:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("kept")
        os.utime(path, (old, old))

    assert storage.sweep_temp_files(tmp_path) == [leftover]
    assert all(path.read_text() == "kept" for path in finished)


# Another host's writer, whose pid this host cannot check: it creates its temp file, says where, and waits.
FOREIGN_WRITER = """
import sys
from tasks.core import storage
storage.WRITER_ID = "farhost.1"
with storage.atomic_open(sys.argv[1], "w") as handle:
    print(handle.name, flush=True)
    sys.stdin.readline()
    handle.write("written by a live writer")
"""


def _start_foreign_writer(target: Path) -> tuple[subprocess.Popen, Path]:
    writer = subprocess.Popen(
        [sys.executable, "-c", FOREIGN_WRITER, str(target)],
        cwd=REPO,
        env=dict(os.environ, PYTHONPATH=str(REPO)),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    temp = Path(writer.stdout.readline().strip())
    assert temp.parent == target.parent and temp.is_file(), temp
    return writer, temp


def test_a_live_writer_on_a_host_whose_clock_is_behind_keeps_its_temp_file(tmp_path):
    # Red team 13: a temp file two hours "old" by our clock (its host's clock is behind) was swept while its
    # writer still wrote it. A writer holds a lock on its temp file; the sweep never takes a locked one.
    target = tmp_path / "run.json"
    old = time.time() - 2 * storage.FOREIGN_TEMP_SECONDS
    writer, temp = _start_foreign_writer(target)
    try:
        os.utime(temp, (old, old))
        assert storage.sweep_temp_files(tmp_path) == []
        assert temp.exists()
    finally:
        output, _ = writer.communicate("go\n", timeout=60)
    assert writer.returncode == 0, output
    assert target.read_text() == "written by a live writer" and not temp.exists()

    # The same writer killed: nothing holds the lock any more, so its old temp file goes.
    writer, temp = _start_foreign_writer(target)
    writer.kill()
    writer.wait()
    os.utime(temp, (old, old))
    assert storage.sweep_temp_files(tmp_path) == [temp]
    assert target.read_text() == "written by a live writer"


def test_a_durable_write_fsyncs_the_very_file_it_renames_and_then_its_folder(tmp_path, monkeypatch):
    # The other durability tests replace _fsync_file itself; this one watches os.fsync on real files, so a
    # _fsync_file that forgot its os.fsync fails here.
    events: list[tuple] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        info = os.fstat(fd)
        events.append(("fsync", info.st_dev, info.st_ino))
        real_fsync(fd)

    def replace(source, destination, **kwargs):
        events.append(("replace", Path(destination).name))
        real_replace(source, destination, **kwargs)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    storage.write_json_atomic(tmp_path / "kept.json", {"a": 1})
    final, folder = os.stat(tmp_path / "kept.json"), os.stat(tmp_path)
    assert events == [
        ("fsync", final.st_dev, final.st_ino),  # the bytes, before the rename makes them the target
        ("replace", "kept.json"),
        ("fsync", folder.st_dev, folder.st_ino),  # the rename itself
    ]
    events.clear()
    storage.write_json_atomic(tmp_path / "notes.json", {"a": 1}, durable=False)
    assert events == [("replace", "notes.json")]
    events.clear()
    saver_files = [tmp_path / "epoch-0001.index", tmp_path / "epoch-0001.data-00000-of-00001"]
    for path in saver_files:
        path.write_bytes(b"written by someone else's code")
    storage.fsync_files(saver_files)
    inodes = [(path.stat().st_dev, path.stat().st_ino) for path in [*saver_files, tmp_path]]
    assert events == [("fsync", *inode) for inode in inodes]


def test_a_failing_fsync_fails_the_write_and_keeps_the_previous_target(tmp_path, monkeypatch):
    target = tmp_path / "kept.json"
    write_json_atomic(target, {"version": 1})
    real_fsync = os.fsync

    def failing_fsync(fd):
        if stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", failing_fsync)
    with pytest.raises(StorageError, match=f"cannot write {target}: Input/output error"):
        write_json_atomic(target, {"version": 2})
    assert json.loads(target.read_text()) == {"version": 1}
    assert [path.name for path in tmp_path.iterdir()] == ["kept.json"]  # no temp file left behind
