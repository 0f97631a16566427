"""Quarantine (tasks.core.quarantine): a bad file is moved aside, never deleted, never followed
through a link and never read when it is not a regular file, and its `.reason.txt` says why and what it was."""

from __future__ import annotations

import errno
import hashlib
import os
import re
import stat
import time
from pathlib import Path

import pytest

from tasks.core import quarantine, storage
from tasks.core.errors import StorageError
from tests.fifo import call_without_blocking

FROZEN = time.struct_time((2026, 12, 4, 5, 6, 7, 4, 338, 0))


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def _reason(target: Path) -> str:
    return target.with_name(target.name + ".reason.txt").read_text(encoding="utf-8")


def test_a_file_is_moved_into_a_private_folder_with_its_size_and_digest(tmp_path):
    bad = tmp_path / "data" / "train.gz"
    bad.parent.mkdir()
    bad.write_bytes(b"not gzip at all")
    bad.chmod(0o644)
    target = quarantine.quarantine(bad, "train.gz: expected gzip, found text")
    assert not bad.exists()
    assert target.parent == tmp_path / "data" / "quarantine" and _mode(target.parent) == 0o700
    assert re.fullmatch(r"train\.gz\.\d{8}T\d{6}", target.name)
    assert target.read_bytes() == b"not gzip at all" and _mode(target) == 0o600
    digest = hashlib.sha256(b"not gzip at all").hexdigest()
    assert _reason(target) == f"train.gz: expected gzip, found text\nsize 15 bytes, sha256 {digest}\n"
    assert _mode(target.with_name(target.name + ".reason.txt")) == 0o600


def test_the_stamp_is_utc_and_a_taken_name_gets_the_next_counter(tmp_path, monkeypatch):
    monkeypatch.setattr(quarantine.time, "gmtime", lambda *args: FROZEN)
    names = []
    for content in (b"one", b"two", b"three"):
        (tmp_path / "x.json").write_bytes(content)
        names.append(quarantine.quarantine(tmp_path / "x.json", "bad").name)
    assert names == ["x.json.20261204T050607", "x.json.20261204T050607.1", "x.json.20261204T050607.2"]
    # Only the reason file of a name left behind: the name is still taken, nothing is overwritten.
    (tmp_path / "quarantine" / "y.json.20261204T050607.reason.txt").write_text("earlier")
    (tmp_path / "y.json").write_bytes(b"y")
    assert quarantine.quarantine(tmp_path / "y.json", "bad").name == "y.json.20261204T050607.1"
    assert (tmp_path / "quarantine" / "y.json.20261204T050607.reason.txt").read_text() == "earlier"
    assert [(tmp_path / "quarantine" / name).read_bytes() for name in names] == [b"one", b"two", b"three"]


def test_keep_bytes_cuts_only_a_larger_file_and_says_so(tmp_path):
    whole = b"0123456789"
    digest = hashlib.sha256(whole).hexdigest()
    for keep, kept, note in [(4, b"0123", "; only its first 4 bytes are kept here"), (10, whole, ""), (11, whole, "")]:
        (tmp_path / "body").write_bytes(whole)
        target = quarantine.quarantine(tmp_path / "body", "too big", keep_bytes=keep)
        assert target.read_bytes() == kept
        assert _reason(target) == f"too big\nsize 10 bytes, sha256 {digest}{note}\n"


def test_a_file_is_never_made_more_readable_than_it_was(tmp_path):
    (tmp_path / "secret").write_bytes(b"s")
    (tmp_path / "secret").chmod(0o400)
    assert _mode(quarantine.quarantine(tmp_path / "secret", "bad")) == 0o400
    (tmp_path / "open").write_bytes(b"o")
    (tmp_path / "open").chmod(0o777)
    assert _mode(quarantine.quarantine(tmp_path / "open", "bad")) == 0o600


def test_a_file_it_may_not_chmod_keeps_its_mode_and_is_still_quarantined(tmp_path, monkeypatch):
    (tmp_path / "theirs").write_bytes(b"t")
    (tmp_path / "theirs").chmod(0o644)

    def not_owner(fd, mode):
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(os, "fchmod", not_owner)
    target = quarantine.quarantine(tmp_path / "theirs", "bad")
    assert _mode(target) == 0o644 and _reason(target).startswith("bad\nsize 1 bytes, sha256 ")


def test_a_files_own_name_may_be_a_link_under_an_artifacts_root(tmp_path):
    root = storage.protect_root(tmp_path / "artifacts")
    (root / "runs").mkdir(parents=True)
    (tmp_path / "elsewhere").write_bytes(b"e")
    (root / "runs" / "run.json").symlink_to(tmp_path / "elsewhere")
    target = quarantine.quarantine(root / "runs" / "run.json", "a link")
    assert target.is_symlink() and (tmp_path / "elsewhere").read_bytes() == b"e"


def test_a_link_planted_at_the_reason_files_name_is_never_written_through(tmp_path, monkeypatch):
    (tmp_path / "bad").write_bytes(b"b")
    victim = tmp_path / "victim.txt"
    victim.write_bytes(b"precious")
    seal = quarantine._seal_quarantined

    def plant_then_seal(target, keep_bytes):  # another user's link appears after the name was chosen
        target.with_name(target.name + ".reason.txt").symlink_to(victim)
        return seal(target, keep_bytes)

    monkeypatch.setattr(quarantine, "_seal_quarantined", plant_then_seal)
    with pytest.raises(StorageError, match=r"reason\.txt: File exists"):
        quarantine.quarantine(tmp_path / "bad", "bad")
    assert victim.read_bytes() == b"precious"


def test_a_link_is_moved_as_the_link_and_its_target_is_untouched(tmp_path):
    precious = tmp_path / "precious.txt"
    precious.write_bytes(b"keep me")
    precious.chmod(0o644)
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "model.index").symlink_to(precious)
    target = quarantine.quarantine(tmp_path / "run" / "model.index", "a link")
    assert target.is_symlink() and os.readlink(target) == str(precious)
    assert precious.read_bytes() == b"keep me" and _mode(precious) == 0o644
    assert _reason(target) == f"a link\nit was a symbolic link to {str(precious)!r} (moved as a link, never followed)\n"


def test_a_fifo_or_a_folder_is_moved_but_never_opened(tmp_path):
    os.mkfifo(tmp_path / "pipe")
    target = quarantine.quarantine(tmp_path / "pipe", "odd")
    assert stat.S_ISFIFO(target.lstat().st_mode)
    assert _reason(target) == "odd\nit was not a regular file (moved as it was, never opened)\n"
    (tmp_path / "folder").mkdir()
    (tmp_path / "folder" / "inner").write_bytes(b"i")
    target = quarantine.quarantine(tmp_path / "folder", "odd")
    assert (target / "inner").read_bytes() == b"i"
    assert _reason(target).endswith("never opened)\n")


def test_a_fifo_swapped_in_after_the_check_is_never_waited_on(tmp_path, monkeypatch):
    """Between lstat and open, a regular file can be replaced by a FIFO: the open must not block on it."""
    os.mkfifo(tmp_path / "pipe")
    regular = (tmp_path / "plain").touch() or (tmp_path / "plain").lstat()
    real_lstat = Path.lstat
    monkeypatch.setattr(Path, "lstat", lambda self: regular if self.name == "pipe" else real_lstat(self))
    result = call_without_blocking(tmp_path / "pipe", lambda: quarantine._seal_quarantined(tmp_path / "pipe", None))
    assert result == "it was not a regular file (moved as it was, never read)"


def test_contents_it_cannot_read_are_kept_whole_and_said(tmp_path, monkeypatch):
    (tmp_path / "theirs").write_bytes(b"t")
    real_open = os.open

    def refusing_open(path, flags, *args):
        if Path(path).name.startswith("theirs.") and not Path(path).name.endswith(".txt"):
            raise PermissionError(13, "Permission denied")
        return real_open(path, flags, *args)

    monkeypatch.setattr(os, "open", refusing_open)
    target = quarantine.quarantine(tmp_path / "theirs", "bad", keep_bytes=0)
    assert target.read_bytes() == b"t"
    assert _reason(target) == "bad\nits contents could not be read (Permission denied), so it is kept whole\n"


def test_a_read_only_file_that_is_not_cut_is_only_opened_for_reading(tmp_path, monkeypatch):
    # A user who is not root may not open their own read-only file for writing: quarantine opens it for
    # writing only when it must cut it, so the digest is still taken.
    (tmp_path / "frozen").write_bytes(b"ro")
    (tmp_path / "frozen").chmod(0o444)
    real_open = os.open

    def as_its_owner(path, flags, *args):
        wants_write = flags & (os.O_WRONLY | os.O_RDWR)
        if wants_write and Path(path).exists() and not os.stat(path).st_mode & stat.S_IWUSR:
            raise PermissionError(13, "Permission denied")
        return real_open(path, flags, *args)

    monkeypatch.setattr(os, "open", as_its_owner)
    target = quarantine.quarantine(tmp_path / "frozen", "bad", keep_bytes=2)
    digest = hashlib.sha256(b"ro").hexdigest()
    assert _reason(target) == f"bad\nsize 2 bytes, sha256 {digest}\n"
    assert target.read_bytes() == b"ro" and _mode(target) == 0o400


@pytest.mark.parametrize("kind", ["a symbolic link", "something else"])
def test_a_quarantine_folder_that_is_not_a_folder_is_refused_and_nothing_moves(tmp_path, kind):
    (tmp_path / "bad").write_bytes(b"b")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    if kind == "a symbolic link":
        (tmp_path / "quarantine").symlink_to(elsewhere)
    else:
        (tmp_path / "quarantine").write_bytes(b"")
    with pytest.raises(StorageError) as error:
        quarantine.quarantine(tmp_path / "bad", "bad")
    assert str(error.value) == (
        f"cannot quarantine into {tmp_path / 'quarantine'}: expected a folder, found {kind}; move it aside and rerun"
    )
    assert (tmp_path / "bad").read_bytes() == b"b" and list(elsewhere.iterdir()) == []


def test_a_quarantine_folder_that_cannot_be_made_is_named_and_nothing_moves(tmp_path, monkeypatch):
    (tmp_path / "bad").write_bytes(b"b")

    def read_only(self, *args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system", str(self))

    monkeypatch.setattr(Path, "mkdir", read_only)
    with pytest.raises(StorageError) as error:
        quarantine.quarantine(tmp_path / "bad", "bad")
    assert str(error.value).startswith(
        f"cannot write {tmp_path / 'quarantine'}: Read-only file system. The filesystem that holds it is mounted "
        "read-only; remount it read-write and rerun"
    )
    assert (tmp_path / "bad").read_bytes() == b"b"
