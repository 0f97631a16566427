"""The rules the temp-file sweep and the stale-file cleanup decide by (tasks/core/storage.py), one at a time:
whose lock counts, which pid is dead, the exact age at which another host's file goes, what the sweep logs,
and that a cleanup racing another one never fails."""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tasks.core import storage
from tasks.core.errors import StorageError
from tests.fifo import call_without_blocking

NOW = 2_000_000_000.0


def _foreign(folder: Path, name: str, age: float) -> Path:
    path = folder / f".{name}{storage.TEMP_MARKER}otherhost.1-5-abcd1234"
    path.write_bytes(b"x")
    os.utime(path, (NOW - age, NOW - age))
    return path


def test_another_hosts_file_goes_only_when_older_than_the_limit(tmp_path, monkeypatch):
    monkeypatch.setattr(storage.time, "time", lambda: NOW)
    at_limit = _foreign(tmp_path, "a.json", storage.FOREIGN_TEMP_SECONDS)
    past = _foreign(tmp_path, "b.json", storage.FOREIGN_TEMP_SECONDS + 1)
    assert storage.sweep_temp_files(tmp_path) == [past]
    assert at_limit.exists() and storage.FOREIGN_TEMP_SECONDS == 3600


def test_the_sweep_logs_what_it_removed_and_goes_on_past_what_it_cannot(tmp_path, monkeypatch):
    monkeypatch.setattr(storage.time, "time", lambda: NOW)
    stuck, first, second = (_foreign(tmp_path, name, 7200) for name in ("a.json", "b.json", "c.json"))
    unlink = Path.unlink

    def refusing_unlink(self, *args, **kwargs):
        if self == stuck:
            raise PermissionError(errno.EACCES, "Permission denied")
        return unlink(self, *args, **kwargs)

    monkeypatch.setattr(Path, "unlink", refusing_unlink)
    messages: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: messages.append(record.getMessage())
    logger = logging.getLogger(storage.__name__)
    logger.addHandler(handler)
    monkeypatch.setattr(logger, "disabled", False)  # a logging config loaded by an earlier test may disable it
    monkeypatch.setattr(logging.root.manager, "disable", logging.NOTSET)
    level = logger.level
    logger.setLevel(logging.INFO)  # setLevel, not the attribute: it clears the logger's cached answers
    try:
        removed = storage.sweep_temp_files(tmp_path)
    finally:
        logger.setLevel(level)
        logger.removeHandler(handler)
    assert sorted(removed) == [first, second] and stuck.exists()
    assert messages == [f"swept 2 temp file(s) of killed writers: {', '.join(map(str, removed))}"]


def test_a_linked_folder_is_never_swept(tmp_path):
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real", target_is_directory=True)
    with pytest.raises(StorageError) as error:
        storage.sweep_temp_files(tmp_path / "link")
    assert str(error.value) == (
        f"not sweeping {tmp_path / 'link'}: it is a symbolic link; the sweep never deletes through one"
    )


def test_a_lock_counts_only_on_the_file_itself(tmp_path):
    locked = tmp_path / "locked"
    locked.write_bytes(b"x")
    fd = os.open(locked, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        assert storage._lock_is_held(locked)
        (tmp_path / "link").symlink_to(locked)
        assert not storage._lock_is_held(tmp_path / "link")  # never followed
    finally:
        os.close(fd)
    assert not storage._lock_is_held(locked)
    assert not storage._lock_is_held(tmp_path / "missing")  # cannot tell: the pid and the age decide


def test_a_filesystem_without_locks_holds_no_lock(tmp_path, monkeypatch):
    (tmp_path / "f").write_bytes(b"x")

    def no_locks(fd, operation):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(storage.fcntl, "flock", no_locks)
    assert not storage._lock_is_held(tmp_path / "f")


def test_looking_for_a_lock_never_waits_on_a_fifo(tmp_path):
    os.mkfifo(tmp_path / "pipe")
    assert call_without_blocking(tmp_path / "pipe", lambda: storage._lock_is_held(tmp_path / "pipe")) is False


def test_a_pid_is_dead_only_when_no_such_process_exists_and_asking_never_signals_it(monkeypatch):
    # The child restores the default action of every signal a mistaken kill(pid, n) might send (under nohup,
    # SIGHUP would be ignored), so that any signal ends it early.
    code = (
        "import signal, sys\n"
        "for n in range(1, 16):\n"
        "    try: signal.signal(n, signal.SIG_DFL)\n"
        "    except (OSError, ValueError): pass\n"
        "sys.stdin.read()"
    )
    child = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE)
    try:
        assert not storage._pid_is_dead(child.pid)
        assert child.poll() is None  # still running: the question sent it no signal
    finally:
        child.communicate(b"")
    assert child.returncode == 0  # it ended on its own, not by a signal the question sent
    assert storage._pid_is_dead(child.pid)
    assert not storage._pid_is_dead(os.getpid())

    def not_ours(pid, signal):
        raise PermissionError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(storage.os, "kill", not_ours)
    assert not storage._pid_is_dead(child.pid)  # exists, of another user: alive


def test_the_stale_file_cleanup_takes_no_file_for_a_folder_and_survives_a_rival_cleanup(tmp_path, monkeypatch):
    (tmp_path / "file.png").write_bytes(b"x")
    assert storage.remove_stale_files(tmp_path / "file.png", keep=set(), suffix=".png") == []
    assert storage.remove_stale_files(tmp_path / "missing", keep=set(), suffix=".png") == []
    assert (tmp_path / "file.png").exists()
    figures = tmp_path / "figures"
    figures.mkdir()
    for name in ("old.png", "new.png"):
        (figures / name).write_bytes(b"x")
    scandir = os.scandir

    def rival_removes_after_listing(path):  # another build's cleanup takes old.png once we have listed it
        entries = list(scandir(path))
        (figures / "old.png").unlink()
        return entries

    monkeypatch.setattr(storage.os, "scandir", rival_removes_after_listing)
    removed = storage.remove_stale_files(figures, keep={figures / "new.png"}, suffix=".png")
    assert removed == [figures / "old.png"] and sorted(os.listdir(figures)) == ["new.png"]
