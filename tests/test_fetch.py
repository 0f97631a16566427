"""Fetching a raw file: real sources (folders, file:// and a real HTTP server on 127.0.0.1), real gzip.

Each test builds tiny synthetic payloads, serves them the way a good or broken mirror would, and checks
the file that lands, its record, the quarantine, and the words of the error.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import time

import pytest

from tasks.core.errors import FetchError
from tasks.data.fetch import FetchLimits, fetch_raw_file
from tests.fetchkit import FAST, NAME, assert_landed

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
    record = fetch_raw_file(
        NAME, [server.url("empty"), str(local_source)], raw_dir, **expected, limits=FetchLimits(retries=3)
    )

    assert record["source"] == str(local_source / NAME)
    assert_landed(raw_dir, gz, payload, record)
    assert [r.status for r in server.requests] == [404]


def test_5xx_is_retried_with_backoff(server, raw_dir, gz, payload, expected):
    server.add(f"mirror/{NAME}", gz, fail_first=2)

    record = fetch_raw_file(
        NAME, [server.url("mirror")], raw_dir, **expected, limits=FetchLimits(retries=3, backoff=0.01)
    )

    assert_landed(raw_dir, gz, payload, record)
    assert [r.status for r in server.requests] == [503, 503, 200]


def test_cut_download_resumes_with_a_range_request(server, raw_dir, gz, payload, expected):
    cut = len(gz) // 3
    server.add(f"mirror/{NAME}", gz, cut_after=cut)

    record = fetch_raw_file(NAME, [server.url("mirror")], raw_dir, **expected, limits=FetchLimits(**FAST))

    assert [(r.range, r.status) for r in server.requests] == [(None, 200), (f"bytes={cut}-", 206)]
    assert_landed(raw_dir, gz, payload, record)


def test_partial_download_of_an_earlier_run_is_resumed(server, raw_dir, gz, payload, expected):
    cut = len(gz) // 2
    route = server.add(f"mirror/{NAME}", gz, cut_after=cut, cut_times=100)

    with pytest.raises(FetchError) as failed:
        fetch_raw_file(NAME, [server.url("mirror")], raw_dir, **expected, limits=FetchLimits(retries=0))
    assert f"connection cut after {cut} of {len(gz)} bytes (gave up after 1 try)" in str(failed.value)
    assert (raw_dir / f"{NAME}.part").read_bytes() == gz[:cut]
    assert not (raw_dir / NAME).exists()  # a partial is never a finished target

    route.cut_after = None
    record = fetch_raw_file(NAME, [server.url("mirror")], raw_dir, **expected, limits=FetchLimits(retries=0))

    assert server.requests[-1].range == f"bytes={cut}-" and server.requests[-1].status == 206
    assert_landed(raw_dir, gz, payload, record)


def test_partial_from_another_mirror_is_not_resumed(server, raw_dir, gz, payload, expected):
    server.add(f"a/{NAME}", gz, cut_after=100, cut_times=100)
    server.add(f"b/{NAME}", gz)
    with pytest.raises(FetchError):
        fetch_raw_file(NAME, [server.url("a")], raw_dir, **expected, limits=FetchLimits(retries=0))

    record = fetch_raw_file(NAME, [server.url("b")], raw_dir, **expected, limits=FetchLimits(retries=0))

    assert [(r.range, r.status) for r in server.requests_for(f"b/{NAME}")] == [(None, 200)]
    assert_landed(raw_dir, gz, payload, record)


def test_server_that_ignores_range_gives_a_fresh_download(server, raw_dir, gz, payload, expected):
    cut = len(gz) // 2
    server.add(f"mirror/{NAME}", gz, cut_after=cut, honor_range=False)

    record = fetch_raw_file(NAME, [server.url("mirror")], raw_dir, **expected, limits=FetchLimits(**FAST))

    assert [(r.range, r.status) for r in server.requests] == [(None, 200), (f"bytes={cut}-", 200)]
    assert_landed(raw_dir, gz, payload, record)  # not the first half twice


def test_more_bytes_than_content_length_are_refused(server, raw_dir, gz, expected):
    server.add(f"mirror/{NAME}", gz, extra=b"\0" * 4096)

    with pytest.raises(FetchError) as failed:
        fetch_raw_file(NAME, [server.url("mirror")], raw_dir, **expected, limits=FetchLimits(**FAST))

    message = str(failed.value)
    url = server.url(f"mirror/{NAME}")
    assert f"{url}: the server sent more bytes than the {len(gz)} its Content-Length" in message
    assert "refused" in message
    assert not (raw_dir / NAME).exists()
    assert len(server.requests) == 1  # a refusal is not retried


def test_announced_size_above_max_bytes_is_refused(server, raw_dir, gz, expected):
    server.add(f"mirror/{NAME}", gz)

    with pytest.raises(FetchError) as failed:
        fetch_raw_file(NAME, [server.url("mirror")], raw_dir, **expected, limits=FetchLimits(max_bytes=1000, **FAST))

    assert f"the server announces {len(gz)} bytes, more than max_bytes=1000; refused" in str(failed.value)
    assert not (raw_dir / NAME).exists()


def test_slow_server_times_out(server, raw_dir, gz, expected):
    server.add(f"mirror/{NAME}", gz, delay=10)

    started = time.monotonic()
    with pytest.raises(FetchError) as failed:
        fetch_raw_file(
            NAME, [server.url("mirror")], raw_dir, **expected, limits=FetchLimits(timeout=0.3, retries=1, backoff=0.01)
        )

    assert time.monotonic() - started < 3
    assert "timed out after 0.3 s without data from the server (gave up after 2 tries)" in str(failed.value)
    assert not (raw_dir / NAME).exists()


def test_server_that_keeps_the_connection_open_after_the_body(server, raw_dir, gz, payload, expected):
    # All announced bytes came; waiting for the close (to catch excess bytes) times out, which is fine.
    server.add(f"mirror/{NAME}", gz, linger=10)

    record = fetch_raw_file(
        NAME, [server.url("mirror")], raw_dir, **expected, limits=FetchLimits(timeout=0.3, retries=0)
    )

    assert_landed(raw_dir, gz, payload, record)


def test_complete_partial_of_a_killed_run_is_verified_not_downloaded_again(server, raw_dir, gz, payload, expected):
    # A run killed after its download but before verification leaves a whole .part and its origin.
    server.add(f"mirror/{NAME}", gz)
    raw_dir.mkdir(parents=True)
    (raw_dir / f"{NAME}.part").write_bytes(gz)
    (raw_dir / f"{NAME}.part.json").write_text(json.dumps({"url": server.url(f"mirror/{NAME}"), "validator": ""}))

    record = fetch_raw_file(NAME, [server.url("mirror")], raw_dir, **expected, limits=FetchLimits(retries=0))

    assert [(r.range, r.status) for r in server.requests] == [(f"bytes={len(gz)}-", 416)]
    assert_landed(raw_dir, gz, payload, record)


def test_redirect_to_http_is_followed_and_to_ftp_refused(server, raw_dir, gz, payload, expected):
    server.add(f"old/{NAME}", b"", location=server.url(f"new/{NAME}"))
    server.add(f"new/{NAME}", gz)
    server.add(f"evil/{NAME}", b"", location=f"ftp://127.0.0.1/{NAME}")

    record = fetch_raw_file(NAME, [server.url("old")], raw_dir, **expected, limits=FetchLimits(**FAST))
    assert record["source"] == server.url(f"old/{NAME}")
    assert_landed(raw_dir, gz, payload, record)

    with pytest.raises(FetchError) as failed:
        fetch_raw_file(NAME, [server.url("evil")], raw_dir, **expected, limits=FetchLimits(**FAST))
    assert f"redirected (302) to 'ftp://127.0.0.1/{NAME}', which is not http(s); refused" in str(failed.value)
