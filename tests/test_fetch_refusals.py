"""Fetching a raw file, continued: bad files are quarantined, bad requests refused, and the nightly re-check."""

from __future__ import annotations

import gzip
import hashlib

import pytest

from tasks.core.errors import DataError, FetchError
from tasks.core.layout import raw_record_path
from tasks.data.fetch import FetchLimits, fetch_raw_file, verify_raw_file
from tests import synthetic
from tests.fetchkit import FAST, NAME, assert_landed, closed_port_url, quarantined

# -- bad files are quarantined -----------------------------------------------------------------


def test_corrupt_bytes_are_quarantined_and_the_next_source_used(server, local_source, raw_dir, gz, payload, expected):
    server.add(f"mirror/{NAME}", gz, corrupt_at=len(gz) // 2)
    url = server.url(f"mirror/{NAME}")

    record = fetch_raw_file(
        NAME, [server.url("mirror"), str(local_source)], raw_dir, **expected, limits=FetchLimits(**FAST)
    )

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
        fetch_raw_file(NAME, [server.url("mirror")], raw_dir, **expected, limits=FetchLimits(**FAST))

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
        fetch_raw_file(NAME, sources, raw_dir, **expected, limits=FetchLimits(**FAST))

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
