"""Fetching when the disk or the source is hostile: links planted where we write, sources that are not
files, servers that trickle, bodies too big to keep. Real files, real links, a real HTTP server."""

from __future__ import annotations

import hashlib
import os
import stat
import threading
import time
from pathlib import Path

import pytest

from tasks.core.errors import FetchError
from tasks.core.storage import QUARANTINE_DIR
from tasks.data.fetch import FetchLimits, fetch_raw_file
from tasks.data.partfile import QUARANTINE_KEEP_BYTES
from tests import synthetic
from tests.httpserver import serve

NAME = synthetic.TRAIN_LABELS

server = pytest.fixture(serve)


@pytest.fixture(scope="module")
def payload() -> bytes:  # this module's file; tests.fetchkit's `expected` hashes it
    return synthetic.payloads(train_count=60, test_count=10)[NAME]


@pytest.fixture
def good_source(tmp_path, payload) -> Path:
    folder = tmp_path / "good"
    folder.mkdir()
    (folder / NAME).write_bytes(synthetic.gz(payload))
    return folder


@pytest.fixture
def raw_dir(tmp_path) -> Path:
    folder = tmp_path / "artifacts" / "data" / "raw"
    folder.mkdir(parents=True)
    return folder


def quarantined(raw_dir: Path) -> list[Path]:
    folder = raw_dir / QUARANTINE_DIR
    return sorted(p for p in folder.iterdir() if not p.name.endswith(".reason.txt")) if folder.exists() else []


def reason_of(path: Path) -> str:
    return path.with_name(path.name + ".reason.txt").read_text()


# -- never write through a link ------------------------------------------------------------------


def test_a_symlinked_part_is_moved_aside_not_written_through(tmp_path, raw_dir, good_source, expected):
    outside = tmp_path / "outside.txt"
    outside.write_text("someone else's file")
    (raw_dir / f"{NAME}.part").symlink_to(outside)

    fetch_raw_file(NAME, [str(good_source)], raw_dir, **expected)

    assert outside.read_text() == "someone else's file"
    assert (raw_dir / NAME).read_bytes() == (good_source / NAME).read_bytes()
    [moved] = quarantined(raw_dir)
    assert moved.is_symlink() and moved.resolve() == outside  # moved as the link itself
    assert "symbolic link" in reason_of(moved)


def test_a_hard_linked_part_is_never_appended_to(tmp_path, raw_dir, server, payload, expected):
    # A resumable-looking partial whose inode is also someone else's file: appending would change it.
    outside = tmp_path / "outside.bin"
    outside.write_bytes(b"precious")
    part = raw_dir / f"{NAME}.part"
    os.link(outside, part)
    server.add(f"m/{NAME}", synthetic.gz(payload))
    (raw_dir / f"{NAME}.part.json").write_text(f'{{"url": "{server.url(f"m/{NAME}")}", "validator": ""}}')

    fetch_raw_file(NAME, [server.url("m")], raw_dir, **expected, limits=FetchLimits(retries=0))

    assert outside.read_bytes() == b"precious"
    assert [r.range for r in server.requests] == [None]  # not resumed from the linked bytes
    assert (raw_dir / NAME).stat().st_nlink == 1


def test_a_quarantined_copy_is_never_more_readable_than_its_source(tmp_path, raw_dir, good_source, expected):
    secret = tmp_path / "secret"
    secret.write_bytes(b"root:only-readable-by-its-owner\n")
    secret.chmod(0o600)
    linked = tmp_path / "linked"
    linked.mkdir()
    (linked / NAME).symlink_to(secret)  # a source entry that points at a private file

    fetch_raw_file(NAME, [str(linked), str(good_source)], raw_dir, **expected)

    [copy] = quarantined(raw_dir)
    assert copy.read_bytes() == secret.read_bytes()
    assert stat.S_IMODE(copy.stat().st_mode) == 0o600
    assert stat.S_IMODE((raw_dir / QUARANTINE_DIR).stat().st_mode) & 0o077 == 0
    assert stat.S_IMODE(copy.with_name(copy.name + ".reason.txt").stat().st_mode) == 0o600
    # the verified file is the published data: readable like any artifact
    assert stat.S_IMODE((raw_dir / NAME).stat().st_mode) == 0o666 & ~_umask()


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


# -- sources that are not files ------------------------------------------------------------------


def test_a_fifo_source_is_refused_at_once_and_the_next_source_used(tmp_path, raw_dir, good_source, expected):
    fifo_dir = tmp_path / "fifo"
    fifo_dir.mkdir()
    fifo = fifo_dir / NAME
    os.mkfifo(fifo)
    # If the fetch opened the FIFO for a blocking read it would hang forever; this writer frees it
    # after 4 s so that the test fails on the clock instead of hanging.
    rescue = threading.Timer(4.0, lambda: os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)))
    rescue.start()
    try:
        started = time.monotonic()
        record = fetch_raw_file(NAME, [str(fifo_dir), str(good_source)], raw_dir, **expected)
        elapsed = time.monotonic() - started
    finally:
        rescue.cancel()
    assert elapsed < 2, f"the FIFO held the fetch for {elapsed:.1f} s"
    assert record["source"] == str(good_source / NAME)
    assert quarantined(raw_dir) == []


@pytest.mark.parametrize("kind", ["device", "folder"])
def test_a_device_or_folder_source_is_refused_without_reading_it(tmp_path, raw_dir, expected, kind):
    odd = tmp_path / "odd"
    odd.mkdir()
    if kind == "device":
        (odd / NAME).symlink_to("/dev/zero")  # endless zeros: read, it would fill the .part to max_bytes
    else:
        (odd / NAME).mkdir()

    with pytest.raises(FetchError) as failed:
        fetch_raw_file(NAME, [str(odd)], raw_dir, **expected, limits=FetchLimits(max_bytes=1 << 20))

    words = "a character device" if kind == "device" else "a folder"
    assert f"{odd / NAME}: it is {words}, not a regular file; refused without reading it" in str(failed.value)
    assert quarantined(raw_dir) == [] and not (raw_dir / f"{NAME}.part").exists()


# -- bounded time and bounded disk ---------------------------------------------------------------


@pytest.mark.parametrize("head", [False, True], ids=["body", "headers"])
def test_a_trickling_server_fails_at_the_deadline_and_the_next_source_is_used(
    server, raw_dir, good_source, payload, expected, head
):
    # One byte every 0.05 s: each read gets data long before the 5 s socket timeout.
    server.add(f"slow/{NAME}", synthetic.gz(payload), trickle=0.05, trickle_head=head)
    sources = [server.url("slow"), str(good_source)]

    started = time.monotonic()
    record = fetch_raw_file(
        NAME, sources, raw_dir, **expected, limits=FetchLimits(timeout=5.0, retries=2, backoff=0.01, deadline=1.0)
    )

    assert time.monotonic() - started < 3
    assert record["source"] == str(good_source / NAME)
    assert len(server.requests) == 1  # the deadline is not retried

    with pytest.raises(FetchError) as failed:
        fetch_raw_file(
            NAME, [server.url("slow")], raw_dir / "again", **expected, limits=FetchLimits(timeout=5.0, deadline=0.5)
        )
    assert "not finished within the deadline of 0.5 s (`[pipeline] fetch_deadline`)" in str(failed.value)


def test_an_oversized_body_keeps_only_its_head_in_quarantine(server, raw_dir, expected):
    # A chunked body announces no size, so the cap trips only after max_bytes have landed in the .part.
    junk = os.urandom(3 << 20)
    server.add(f"big/{NAME}", junk, chunked=True)

    with pytest.raises(FetchError) as failed:
        fetch_raw_file(NAME, [server.url("big")], raw_dir, **expected, limits=FetchLimits(max_bytes=2 << 20, retries=0))

    assert "the body exceeds max_bytes=2097152; refused" in str(failed.value)
    [kept] = quarantined(raw_dir)
    assert kept.read_bytes() == junk[:QUARANTINE_KEEP_BYTES]
    landed = junk[: 2 << 20]  # what the .part held when it was refused
    reason = reason_of(kept)
    assert f"size {len(landed)} bytes, sha256 {hashlib.sha256(landed).hexdigest()}" in reason
    assert f"only its first {QUARANTINE_KEEP_BYTES} bytes are kept" in reason
