"""The data stage through Luigi: FetchFile ×4 → DecodeData → PrepareData, into a temp artifacts root."""

from __future__ import annotations

import gzip
import hashlib
import json
import stat
import time
from pathlib import Path

import numpy as np
import pytest

from pipeline import DecodeData, FetchFile, PrepareData
from tasks.data.arrays import load_arrays, load_indices
from tasks.data.dataset import RAW_FILE_NAMES
from tasks.data.partfile import QUARANTINE_KEEP_BYTES
from tests.conftest import REAL_DATA_DIR, SYNTHETIC_TRAIN_ROWS, build, luigi_cli
from tests.httpserver import HttpTestServer
from tests.synthetic import TRAIN_IMAGES, TRAIN_LABELS, make_images_labels


def test_prepare_data_builds_everything_then_a_rerun_runs_nothing(site, ran_tasks):
    build([PrepareData(validation_per_class=10, split_seed=3)])
    assert ran_tasks.families() == sorted(["FetchFile"] * 4 + ["DecodeData", "PrepareData"])

    for name in RAW_FILE_NAMES:
        assert (site / "data" / "raw" / name).is_file()
    manifest = json.loads((site / "data" / "manifest.json").read_text())
    assert set(manifest["files"]) == set(RAW_FILE_NAMES)
    assert manifest["files"][TRAIN_IMAGES]["rows"] == SYNTHETIC_TRAIN_ROWS
    assert all(
        len(entry["payload_sha256"]) == 64 and len(entry["gz_sha256"]) == 64 for entry in manifest["files"].values()
    )
    assert all(entry["source"] for entry in manifest["files"].values())

    images, labels = load_arrays(site / "data" / "arrays" / "train.arrow")
    expected_images, expected_labels = make_images_labels(SYNTHETIC_TRAIN_ROWS, seed=1)
    np.testing.assert_array_equal(images, expected_images)
    np.testing.assert_array_equal(labels, expected_labels)
    validation = load_indices(site / "data" / "arrays" / "split-v10-s3.arrow")
    assert np.bincount(labels[validation], minlength=10).tolist() == [10] * 10

    ran_tasks.tasks.clear()
    build([PrepareData(validation_per_class=10, split_seed=3)])
    assert ran_tasks.tasks == []


def test_a_corrupt_source_is_quarantined_and_the_next_source_used(site, synthetic_raw, tmp_path):
    import luigi.configuration

    good, _ = synthetic_raw
    bad = tmp_path / "bad-mirror"
    bad.mkdir()
    for name in RAW_FILE_NAMES:
        data = bytearray((good / name).read_bytes())
        if name == TRAIN_IMAGES:
            payload = bytearray(gzip.decompress(bytes(data)))
            payload[5000] ^= 0xFF
            data = bytearray(gzip.compress(bytes(payload)))
        (bad / name).write_bytes(bytes(data))
    luigi.configuration.get_config().set("pipeline", "sources", json.dumps([str(bad), str(good)]))

    build([DecodeData()])
    record = json.loads((site / "data" / "raw" / f"{TRAIN_IMAGES}.json").read_text())
    assert record["source"].startswith(str(good))
    quarantined = list((site / "data" / "raw" / "quarantine").glob(f"{TRAIN_IMAGES}.*"))
    [kept] = [path for path in quarantined if not path.name.endswith(".reason.txt")]
    bad_bytes = (bad / TRAIN_IMAGES).read_bytes()
    assert len(bad_bytes) > QUARANTINE_KEEP_BYTES  # so the cap applies: only the head is kept as evidence
    assert kept.read_bytes() == bad_bytes[:QUARANTINE_KEEP_BYTES]
    reason = kept.with_name(kept.name + ".reason.txt").read_text()
    assert f"size {len(bad_bytes)} bytes, sha256 {hashlib.sha256(bad_bytes).hexdigest()}" in reason
    assert f"only its first {QUARANTINE_KEEP_BYTES} bytes are kept" in reason
    assert stat.S_IMODE(kept.stat().st_mode) == 0o600


def test_fetch_deadline_setting_reaches_the_fetch(site, synthetic_raw):
    import luigi.configuration

    good, _ = synthetic_raw
    with HttpTestServer() as server:
        server.add(f"slow/{TRAIN_LABELS}", (good / TRAIN_LABELS).read_bytes(), trickle=0.05)
        config = luigi.configuration.get_config()
        config.set("pipeline", "sources", json.dumps([server.url("slow"), str(good)]))
        config.set("pipeline", "fetch_deadline", "0.5")
        try:
            started = time.monotonic()
            build([FetchFile(name=TRAIN_LABELS)])
            elapsed = time.monotonic() - started
        finally:
            config.remove_option("pipeline", "fetch_deadline")
    assert elapsed < 3, f"the trickling source held FetchFile for {elapsed:.1f} s"
    record = json.loads((site / "data" / "raw" / f"{TRAIN_LABELS}.json").read_text())
    assert record["source"] == str(good / TRAIN_LABELS)


def _site_cfg(path: Path, root: Path, sources: list[str], checksums: Path | None) -> Path:
    lines = ["[pipeline]", f"artifacts_root = {root}", f"sources = {json.dumps(sources)}", "fetch_retries = 0"]
    if checksums:
        lines.append(f"checksums_file = {checksums}")
    path.write_text("\n".join(lines) + "\n")
    return path


def test_cli_runs_prepare_data_and_exits_nonzero_when_every_source_fails(tmp_path, synthetic_raw):
    raw, checksums = synthetic_raw
    ok = luigi_cli(
        ["PrepareData", "--validation-per-class", "5"],
        _site_cfg(tmp_path / "ok.cfg", tmp_path / "a", [str(raw)], checksums),
    )
    assert ok.returncode == 0, ok.stderr[-3000:]
    assert (tmp_path / "a" / "data" / "arrays" / "split-v5-s0.arrow").is_file()

    missing = tmp_path / "no-such-dir"
    failed = luigi_cli(["PrepareData"], _site_cfg(tmp_path / "bad.cfg", tmp_path / "b", [str(missing)], checksums))
    assert failed.returncode == 30, failed.stderr[-3000:]  # [retcode] task_failed
    assert str(missing) in failed.stderr and "dataset-fashion-mnist" in failed.stderr


@pytest.mark.realdata
@pytest.mark.skipif(not REAL_DATA_DIR.is_dir(), reason="the Debian package dataset-fashion-mnist is not installed")
def test_real_debian_files_end_to_end(tmp_path):
    import luigi.configuration

    config = luigi.configuration.get_config()
    config.set("pipeline", "artifacts_root", str(tmp_path / "artifacts"))
    config.set("pipeline", "sources", json.dumps([str(REAL_DATA_DIR)]))
    try:
        build([PrepareData()])
    finally:
        config.remove_option("pipeline", "artifacts_root")
        config.remove_option("pipeline", "sources")
    arrays = tmp_path / "artifacts" / "data" / "arrays"
    train_images, train_labels = load_arrays(arrays / "train.arrow")
    test_images, test_labels = load_arrays(arrays / "test.arrow")
    assert train_images.shape == (60000, 784) and test_images.shape == (10000, 784)
    assert np.bincount(train_labels).tolist() == [6000] * 10
    assert np.bincount(test_labels).tolist() == [1000] * 10
    validation = load_indices(arrays / "split-v600-s0.arrow")
    assert len(validation) == 6000 and np.bincount(train_labels[validation]).tolist() == [600] * 10
    manifest = json.loads((tmp_path / "artifacts" / "data" / "manifest.json").read_text())
    assert manifest["files"]["train-images-idx3-ubyte.gz"]["payload_sha256"].startswith("c59f468a")
    assert manifest["files"]["train-images-idx3-ubyte.gz"]["source"].startswith(str(REAL_DATA_DIR))


def test_a_site_checksums_table_is_checked_before_use(tmp_path):
    from tasks.core.errors import ConfigError
    from tasks.data.checksums import published_checksums

    table = tmp_path / "checksums.json"
    table.write_text('{"train-labels-idx1-ubyte.gz": {"payload_sha256": "not-a-digest"}}')
    with pytest.raises(ConfigError, match="expected 64 hex digits"):
        published_checksums("train-labels-idx1-ubyte.gz", str(table))
    with pytest.raises(ConfigError, match="with an entry for t10k-labels-idx1-ubyte.gz"):
        published_checksums("t10k-labels-idx1-ubyte.gz", str(table))
    assert published_checksums("t10k-labels-idx1-ubyte.gz")[0] != published_checksums("train-labels-idx1-ubyte.gz")[0]
