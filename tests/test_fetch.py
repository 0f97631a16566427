"""Fetching a raw file: real sources (folders, file:// and a real HTTP server on 127.0.0.1), real gzip.

Each test builds tiny synthetic payloads, serves them the way a good or broken mirror would, and checks
the file that lands, its record, the quarantine, and the words of the error.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import socket
import time
from pathlib import Path

import pytest

from tasks.core.errors import DataError, FetchError
from tasks.core.layout import raw_record_path
from tasks.core.storage import QUARANTINE_DIR
from tasks.data.fetch import fetch_raw_file, verify_raw_file
from tests import synthetic
from tests.httpserver import serve

NAME = synthetic.TRAIN_IMAGES
FAST = {"retries": 1, "backoff": 0.01, "timeout": 5.0}  # keep failing sources cheap

server = pytest.fixture(serve)


@pytest.fixture(scope="module")
def payload() -> bytes:
    """A 60-image IDX payload: ~47 KB, enough to cut a download in the middle."""
    return synthetic.payloads(train_count=60, test_count=10)[NAME]


@pytest.fixture(scope="module")
def gz(payload) -> bytes:
    return synthetic.gz(payload)


@pytest.fixture
def expected(payload) -> dict:
    return {"expected_payload_sha256": hashlib.sha256(payload).hexdigest()}


@pytest.fixture
def local_source(tmp_path, gz) -> Path:
    folder = tmp_path / "debian"
    folder.mkdir()
    (folder / NAME).write_bytes(gz)
    return folder


@pytest.fixture
def raw_dir(tmp_path) -> Path:
    return tmp_path / "artifacts" / "data" / "raw"


def quarantined(raw_dir: Path) -> list[Path]:
    folder = raw_dir / QUARANTINE_DIR
    return sorted(p for p in folder.iterdir() if not p.name.endswith(".reason.txt")) if folder.exists() else []


def closed_port_url() -> str:
    """An http URL on 127.0.0.1 where nothing listens, so the connection is refused."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/mirror"


def assert_landed(raw_dir: Path, gz: bytes, payload: bytes, record: dict) -> None:
    """The good file is in place, byte for byte, with a record on disk and no partial left."""
    assert (raw_dir / NAME).read_bytes() == gz
    assert json.loads(raw_record_path(raw_dir, NAME).read_text()) == record
    assert record["name"] == NAME
    assert record["gz_sha256"] == hashlib.sha256(gz).hexdigest()
    assert record["gz_bytes"] == len(gz)
    assert record["payload_sha256"] == hashlib.sha256(payload).hexdigest()
    assert record["payload_bytes"] == len(payload)
    assert not (raw_dir / f"{NAME}.part").exists()
    assert not (raw_dir / f"{NAME}.part.json").exists()
    verify_raw_file(raw_dir / NAME, record)


# -- good sources ---------------------------------------------------------------------------------


def test_local_directory_is_copied_and_verified_by_payload(local_source, raw_dir, gz, payload, expected):
    record = fetch_raw_file(NAME, [str(local_source)], raw_dir, **expected)

    assert record["source"] == str(local_source / NAME)
    assert record["verified_by"] == "payload-sha256"
    assert_landed(raw_dir, gz, payload, record)
    landed, original = (raw_dir / NAME).stat(), (local_source / NAME).stat()
    assert not (raw_dir / NAME).is_symlink() and landed.st_ino != original.st_ino  # a copy, not a link


def test_file_url_source(local_source, raw_dir, gz, payload, expected):
    source = local_source.as_uri()

    record = fetch_raw_file(NAME, [source], raw_dir, **expected)

    assert record["source"] == f"{source}/{NAME}"
    assert_landed(raw_dir, gz, payload, record)


def test_http_source(server, raw_dir, gz, payload, expected):
    server.add(f"mirror/{NAME}", gz)

    record = fetch_raw_file(NAME, [server.url("mirror/")], raw_dir, **expected)

    assert record["source"] == server.url(f"mirror/{NAME}")
    assert_landed(raw_dir, gz, payload, record)
    assert [(r.range, r.status) for r in server.requests] == [(None, 200)]


def test_gz_md5_is_a_fast_path(local_source, raw_dir, gz, payload, expected):
    record = fetch_raw_file(NAME, [str(local_source)], raw_dir, expected_gz_md5=hashlib.md5(gz).hexdigest(), **expected)

    assert record["verified_by"] == "gz-md5"
    assert_landed(raw_dir, gz, payload, record)  # payload size comes from the gzip trailer


def test_recompressed_file_with_another_md5_is_accepted_by_its_payload(tmp_path, raw_dir, gz, payload, expected):
    # Debian's recompressed .gz: other bytes, other md5, same payload.
    debian = tmp_path / "debian"
    debian.mkdir()
    recompressed = gzip.compress(payload, compresslevel=9, mtime=12345)
    assert recompressed != gz
    (debian / NAME).write_bytes(recompressed)

    record = fetch_raw_file(NAME, [str(debian)], raw_dir, expected_gz_md5=hashlib.md5(gz).hexdigest(), **expected)

    assert record["verified_by"] == "payload-sha256"
    assert_landed(raw_dir, recompressed, payload, record)


# -- HTTP failures and recovery ----------------------------------------------------------------


def test_404_is_not_retried_and_the_next_source_is_used(server, local_source, raw_dir, gz, payload, expected):
    record = fetch_raw_file(NAME, [server.url("empty"), str(local_source)], raw_dir, retries=3, **expected)

    assert record["source"] == str(local_source / NAME)
    assert_landed(raw_dir, gz, payload, record)
    assert [r.status for r in server.requests] == [404]


def test_5xx_is_retried_with_backoff(server, raw_dir, gz, payload, expected):
    server.add(f"mirror/{NAME}", gz, fail_first=2)

    record = fetch_raw_file(NAME, [server.url("mirror")], raw_dir, retries=3, backoff=0.01, **expected)

    assert_landed(raw_dir, gz, payload, record)
    assert [r.status for r in server.requests] == [503, 503, 200]


def test_cut_download_resumes_with_a_range_request(server, raw_dir, gz, payload, expected):
    cut = len(gz) // 3
    server.add(f"mirror/{NAME}", gz, cut_after=cut)

    record = fetch_raw_file(NAME, [server.url("mirror")], raw_dir, **FAST, **expected)

    assert [(r.range, r.status) for r in server.requests] == [(None, 200), (f"bytes={cut}-", 206)]
    assert_landed(raw_dir, gz, payload, record)


def test_partial_download_of_an_earlier_run_is_resumed(server, raw_dir, gz, payload, expected):
    cut = len(gz) // 2
    route = server.add(f"mirror/{NAME}", gz, cut_after=cut, cut_times=100)

    with pytest.raises(FetchError) as failed:
        fetch_raw_file(NAME, [server.url("mirror")], raw_dir, retries=0, **expected)
    assert f"connection cut after {cut} of {len(gz)} bytes (gave up after 1 try)" in str(failed.value)
    assert (raw_dir / f"{NAME}.part").read_bytes() == gz[:cut]
    assert not (raw_dir / NAME).exists()  # a partial is never a finished target

    route.cut_after = None
    record = fetch_raw_file(NAME, [server.url("mirror")], raw_dir, retries=0, **expected)

    assert server.requests[-1].range == f"bytes={cut}-" and server.requests[-1].status == 206
    assert_landed(raw_dir, gz, payload, record)


def test_partial_from_another_mirror_is_not_resumed(server, raw_dir, gz, payload, expected):
    server.add(f"a/{NAME}", gz, cut_after=100, cut_times=100)
    server.add(f"b/{NAME}", gz)
    with pytest.raises(FetchError):
        fetch_raw_file(NAME, [server.url("a")], raw_dir, retries=0, **expected)

    record = fetch_raw_file(NAME, [server.url("b")], raw_dir, retries=0, **expected)

    assert [(r.range, r.status) for r in server.requests_for(f"b/{NAME}")] == [(None, 200)]
    assert_landed(raw_dir, gz, payload, record)


def test_server_that_ignores_range_gives_a_fresh_download(server, raw_dir, gz, payload, expected):
    cut = len(gz) // 2
    server.add(f"mirror/{NAME}", gz, cut_after=cut, honor_range=False)

    record = fetch_raw_file(NAME, [server.url("mirror")], raw_dir, **FAST, **expected)

    assert [(r.range, r.status) for r in server.requests] == [(None, 200), (f"bytes={cut}-", 200)]
    assert_landed(raw_dir, gz, payload, record)  # not the first half twice


def test_more_bytes_than_content_length_are_refused(server, raw_dir, gz, expected):
    server.add(f"mirror/{NAME}", gz, extra=b"\0" * 4096)

    with pytest.raises(FetchError) as failed:
        fetch_raw_file(NAME, [server.url("mirror")], raw_dir, **FAST, **expected)

    message = str(failed.value)
    url = server.url(f"mirror/{NAME}")
    assert f"{url}: the server sent more bytes than the {len(gz)} its Content-Length" in message
    assert "refused" in message
    assert not (raw_dir / NAME).exists()
    assert len(server.requests) == 1  # a refusal is not retried


def test_announced_size_above_max_bytes_is_refused(server, raw_dir, gz, expected):
    server.add(f"mirror/{NAME}", gz)

    with pytest.raises(FetchError) as failed:
        fetch_raw_file(NAME, [server.url("mirror")], raw_dir, max_bytes=1000, **FAST, **expected)

    assert f"the server announces {len(gz)} bytes, more than max_bytes=1000; refused" in str(failed.value)
    assert not (raw_dir / NAME).exists()


def test_slow_server_times_out(server, raw_dir, gz, expected):
    server.add(f"mirror/{NAME}", gz, delay=10)

    started = time.monotonic()
    with pytest.raises(FetchError) as failed:
        fetch_raw_file(NAME, [server.url("mirror")], raw_dir, timeout=0.3, retries=1, backoff=0.01, **expected)

    assert time.monotonic() - started < 3
    assert "timed out after 0.3 s without data from the server (gave up after 2 tries)" in str(failed.value)
    assert not (raw_dir / NAME).exists()


def test_server_that_keeps_the_connection_open_after_the_body(server, raw_dir, gz, payload, expected):
    # All announced bytes came; waiting for the close (to catch excess bytes) times out, which is fine.
    server.add(f"mirror/{NAME}", gz, linger=10)

    record = fetch_raw_file(NAME, [server.url("mirror")], raw_dir, timeout=0.3, retries=0, **expected)

    assert_landed(raw_dir, gz, payload, record)


def test_complete_partial_of_a_killed_run_is_verified_not_downloaded_again(server, raw_dir, gz, payload, expected):
    # A run killed after its download but before verification leaves a whole .part and its origin.
    server.add(f"mirror/{NAME}", gz)
    raw_dir.mkdir(parents=True)
    (raw_dir / f"{NAME}.part").write_bytes(gz)
    (raw_dir / f"{NAME}.part.json").write_text(json.dumps({"url": server.url(f"mirror/{NAME}"), "validator": ""}))

    record = fetch_raw_file(NAME, [server.url("mirror")], raw_dir, retries=0, **expected)

    assert [(r.range, r.status) for r in server.requests] == [(f"bytes={len(gz)}-", 416)]
    assert_landed(raw_dir, gz, payload, record)


def test_redirect_to_http_is_followed_and_to_ftp_refused(server, raw_dir, gz, payload, expected):
    server.add(f"old/{NAME}", b"", location=server.url(f"new/{NAME}"))
    server.add(f"new/{NAME}", gz)
    server.add(f"evil/{NAME}", b"", location=f"ftp://127.0.0.1/{NAME}")

    record = fetch_raw_file(NAME, [server.url("old")], raw_dir, **FAST, **expected)
    assert record["source"] == server.url(f"old/{NAME}")
    assert_landed(raw_dir, gz, payload, record)

    with pytest.raises(FetchError) as failed:
        fetch_raw_file(NAME, [server.url("evil")], raw_dir, **FAST, **expected)
    assert f"redirected (302) to 'ftp://127.0.0.1/{NAME}', which is not http(s); refused" in str(failed.value)


# -- bad files are quarantined -----------------------------------------------------------------


def test_corrupt_bytes_are_quarantined_and_the_next_source_used(server, local_source, raw_dir, gz, payload, expected):
    server.add(f"mirror/{NAME}", gz, corrupt_at=len(gz) // 2)
    url = server.url(f"mirror/{NAME}")

    record = fetch_raw_file(NAME, [server.url("mirror"), str(local_source)], raw_dir, **FAST, **expected)

    assert record["source"] == str(local_source / NAME)
    assert_landed(raw_dir, gz, payload, record)
    [bad] = quarantined(raw_dir)
    corrupted = bytearray(gz)
    corrupted[len(gz) // 2] ^= 0xFF
    assert bad.read_bytes() == bytes(corrupted)  # the evidence is kept as it came
    reason = bad.with_name(bad.name + ".reason.txt").read_text()
    assert url in reason and ("corrupt gzip stream" in reason or "payload sha256 mismatch" in reason)


def test_payload_mismatch_message_names_both_digests_and_the_quarantine(server, raw_dir, gz, expected):
    other = synthetic.gz(synthetic.payloads(train_count=30, test_count=10)[NAME])
    server.add(f"mirror/{NAME}", other)

    with pytest.raises(FetchError) as failed:
        fetch_raw_file(NAME, [server.url("mirror")], raw_dir, **FAST, **expected)

    [bad] = quarantined(raw_dir)
    found = hashlib.sha256(gzip.decompress(other)).hexdigest()
    assert (
        f"payload sha256 mismatch: expected {expected['expected_payload_sha256']}, found {found}; quarantined to {bad}"
    ) in str(failed.value)
    assert bad.read_bytes() == other
    assert "payload sha256 mismatch" in bad.with_name(bad.name + ".reason.txt").read_text()


def test_truncated_gzip_is_a_verification_failure(tmp_path, raw_dir, gz, expected):
    folder = tmp_path / "short"
    folder.mkdir()
    (folder / NAME).write_bytes(gz[:-20])

    with pytest.raises(FetchError) as failed:
        fetch_raw_file(NAME, [str(folder)], raw_dir, **expected)

    assert "truncated gzip stream" in str(failed.value)
    assert [p.read_bytes() for p in quarantined(raw_dir)] == [gz[:-20]]


def test_gzip_bomb_is_refused(tmp_path, raw_dir):
    # The labels file's published payload is 60008 bytes; 4 MiB of zeros squeezes into ~4 KB.
    name = synthetic.TRAIN_LABELS
    folder = tmp_path / "bomb"
    folder.mkdir()
    (folder / name).write_bytes(gzip.compress(bytes(4 << 20)))

    with pytest.raises(FetchError) as failed:
        fetch_raw_file(name, [str(folder)], raw_dir, expected_payload_sha256="0" * 64)

    assert "the decompressed payload exceeds 60008 bytes" in str(failed.value)
    assert len(quarantined(raw_dir)) == 1


# -- refusals and the final error ----------------------------------------------------------------


def test_all_sources_failing_lists_each_one_and_the_fix(server, tmp_path, raw_dir, gz, expected):
    server.add(f"bad/{NAME}", b"not gzip at all")
    missing_dir = tmp_path / "nowhere"
    refused = closed_port_url()
    sources = [str(missing_dir), server.url("empty"), refused, "ftp://example.org/pub", server.url("bad")]

    with pytest.raises(FetchError) as failed:
        fetch_raw_file(NAME, sources, raw_dir, **FAST, **expected)

    message = str(failed.value)
    assert f"cannot fetch {NAME} from any of 5 source(s)" in message
    assert f"{missing_dir / NAME}: directory {missing_dir} does not exist" in message
    assert f"{server.url('empty/' + NAME)}: 404 Not Found" in message
    assert f"{refused}/{NAME}: connection refused (gave up after 2 tries)" in message
    assert "ftp://example.org/pub: unsupported URL scheme 'ftp' (allowed: file, http, https)" in message
    assert f"{server.url('bad/' + NAME)}: corrupt gzip stream" in message
    assert "dataset-fashion-mnist" in message and "/usr/share/datasets/fashion-mnist" in message
    assert "[pipeline] sources" in message
    assert not (raw_dir / NAME).exists() and not raw_record_path(raw_dir, NAME).exists()


def test_unknown_scheme_alone_is_refused(raw_dir, expected):
    with pytest.raises(FetchError, match=r"ftp://mirror\.example/fmnist: unsupported URL scheme 'ftp'"):
        fetch_raw_file(NAME, ["ftp://mirror.example/fmnist"], raw_dir, **expected)


@pytest.mark.parametrize("name", ["../etc/passwd", "train-images-idx3-ubyte", "evil.gz"])
def test_unknown_file_name_is_refused(name, local_source, raw_dir, expected):
    with pytest.raises(FetchError) as failed:
        fetch_raw_file(name, [str(local_source)], raw_dir, **expected)

    assert f"unknown raw file name {name!r}" in str(failed.value)
    assert NAME in str(failed.value)  # the message lists the allowed names
    assert not raw_dir.exists()


def test_malformed_checksum_is_refused(local_source, raw_dir):
    with pytest.raises(FetchError, match="expected_payload_sha256 must be 64 hex digits"):
        fetch_raw_file(NAME, [str(local_source)], raw_dir, expected_payload_sha256="abc")


# -- the nightly re-check -------------------------------------------------------------------------


def test_verify_raw_file_catches_a_changed_file(local_source, raw_dir, expected):
    record = fetch_raw_file(NAME, [str(local_source)], raw_dir, **expected)
    path = raw_dir / NAME
    verify_raw_file(path, record)  # intact: no error

    changed = bytearray(path.read_bytes())
    changed[100] ^= 0x01
    path.write_bytes(bytes(changed))
    with pytest.raises(DataError) as failed:
        verify_raw_file(path, record)
    message = str(failed.value)
    assert str(path) in message and "changed since it was fetched" in message
    assert f"expected gz sha256 {record['gz_sha256']}, found {hashlib.sha256(changed).hexdigest()}" in message
    assert "rerun FetchFile" in message

    path.write_bytes(bytes(changed[:-1]))
    with pytest.raises(DataError, match=rf"expected {record['gz_bytes']} bytes, found {record['gz_bytes'] - 1}"):
        verify_raw_file(path, record)

    path.unlink()
    with pytest.raises(DataError, match="missing"):
        verify_raw_file(path, record)
