"""decode_dataset and make_split on a tiny synthetic dataset, and once on the real Debian files."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from tasks.core.errors import DataError
from tasks.core.storage import sha256_file
from tasks.data.arrays import load_arrays, load_indices
from tasks.data.dataset import DEBIAN_DIR, RAW_FILES
from tasks.data.prepare import decode_dataset, make_split
from tests import synthetic


def fetch_records(raw_dir: Path, payload_sha256: dict[str, str], source: str) -> dict[str, dict]:
    """The records FetchFile writes beside each raw file."""
    return {
        name: {
            "name": name,
            "source": f"{source}/{name}",
            "gz_sha256": sha256_file(raw_dir / name),
            "gz_bytes": (raw_dir / name).stat().st_size,
            "payload_sha256": digest,
            "payload_bytes": RAW_FILES[name].payload_bytes if source == DEBIAN_DIR else None,
            "verified_by": "payload_sha256",
        }
        for name, digest in payload_sha256.items()
    }


@pytest.fixture
def raw_dir(tmp_path) -> Path:
    directory = tmp_path / "raw"
    synthetic.write_raw_dir(directory, train_count=120, test_count=40)
    return directory


def synthetic_records(raw_dir: Path) -> dict[str, dict]:
    digests = {
        name: hashlib.sha256(payload).hexdigest()
        for name, payload in synthetic.payloads(train_count=120, test_count=40).items()
    }
    return fetch_records(raw_dir, digests, "file:///mirror")


def test_round_trip_synthetic_to_arrow(raw_dir, tmp_path):
    records = synthetic_records(raw_dir)
    manifest = decode_dataset(raw_dir, tmp_path / "arrays", records)

    for split, count, seed in (("train", 120, 1), ("test", 40, 2)):
        source_images, source_labels = synthetic.make_images_labels(count, seed=seed)
        images, labels = load_arrays(tmp_path / "arrays" / f"{split}.arrow")
        np.testing.assert_array_equal(images, source_images)
        np.testing.assert_array_equal(labels, source_labels)
        arrays_entry = manifest["arrays"][split]
        assert arrays_entry == {
            "path": str(tmp_path / "arrays" / f"{split}.arrow"),
            "rows": count,
            "sha256": sha256_file(arrays_entry["path"]),
        }

    assert set(manifest["files"]) == set(RAW_FILES)
    entry = manifest["files"][synthetic.TRAIN_IMAGES]
    assert entry == {
        "source": f"file:///mirror/{synthetic.TRAIN_IMAGES}",
        "gz_sha256": records[synthetic.TRAIN_IMAGES]["gz_sha256"],
        "payload_sha256": records[synthetic.TRAIN_IMAGES]["payload_sha256"],
        "rows": 120,
    }
    assert manifest["files"][synthetic.TEST_LABELS]["rows"] == 40


def test_payload_differing_from_fetch_record_is_refused(raw_dir, tmp_path):
    records = synthetic_records(raw_dir)
    records[synthetic.TEST_LABELS]["payload_sha256"] = "0" * 64
    with pytest.raises(DataError) as excinfo:
        decode_dataset(raw_dir, tmp_path / "arrays", records)
    message = str(excinfo.value)
    assert str(raw_dir / synthetic.TEST_LABELS) in message
    assert f"expected payload sha256 {'0' * 64}" in message
    assert f"found {hashlib.sha256(synthetic.payloads(120, 40)[synthetic.TEST_LABELS]).hexdigest()}" in message
    assert "rerun FetchFile" in message
    assert not (tmp_path / "arrays" / "test.arrow").exists()


def test_missing_fetch_record_is_refused(raw_dir, tmp_path):
    records = synthetic_records(raw_dir)
    del records[synthetic.TRAIN_LABELS]
    with pytest.raises(DataError, match=r"train-labels-idx1-ubyte\.gz\.json: expected a fetch record .* found none"):
        decode_dataset(raw_dir, tmp_path / "arrays", records)


def test_corrupt_raw_file_is_refused_with_its_name(raw_dir, tmp_path):
    path = raw_dir / synthetic.TRAIN_IMAGES
    path.write_bytes(path.read_bytes()[:-20])
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte\.gz: expected a complete gzip stream"):
        decode_dataset(raw_dir, tmp_path / "arrays", synthetic_records(raw_dir))


def test_make_split_writes_stratified_indices(raw_dir, tmp_path):
    decode_dataset(raw_dir, tmp_path / "arrays", synthetic_records(raw_dir))
    train_arrow, split_path = tmp_path / "arrays" / "train.arrow", tmp_path / "arrays" / "split.arrow"
    summary = make_split(train_arrow, split_path, per_class=3, seed=5)
    assert summary == {"rows": 30, "per_class": 3, "seed": 5, "class_counts": [3] * 10}
    _, labels = load_arrays(train_arrow)
    val = load_indices(split_path)
    assert val.dtype == np.int64 and np.all(np.diff(val) > 0)
    np.testing.assert_array_equal(np.bincount(labels[val], minlength=10), [3] * 10)
    make_split(train_arrow, tmp_path / "again.arrow", per_class=3, seed=5)
    np.testing.assert_array_equal(load_indices(tmp_path / "again.arrow"), val)


@pytest.mark.realdata
@pytest.mark.skipif(
    not Path(DEBIAN_DIR).is_dir(), reason=f"{DEBIAN_DIR} is absent: install the Debian package dataset-fashion-mnist"
)
def test_real_fashion_mnist_end_to_end(tmp_path):
    raw_dir = Path(DEBIAN_DIR)
    records = fetch_records(raw_dir, {name: raw.payload_sha256 for name, raw in RAW_FILES.items()}, DEBIAN_DIR)
    manifest = decode_dataset(raw_dir, tmp_path / "arrays", records)
    assert manifest["arrays"]["train"]["rows"] == 60_000
    assert manifest["arrays"]["test"]["rows"] == 10_000
    assert {name: entry["rows"] for name, entry in manifest["files"].items()} == {
        name: raw.rows for name, raw in RAW_FILES.items()
    }

    train_images, train_labels = load_arrays(tmp_path / "arrays" / "train.arrow")
    assert train_images.shape == (60_000, 784)
    np.testing.assert_array_equal(np.bincount(train_labels, minlength=10), [6_000] * 10)

    summary = make_split(
        tmp_path / "arrays" / "train.arrow", tmp_path / "arrays" / "split.arrow", per_class=600, seed=0
    )
    assert summary["rows"] == 6_000 and summary["class_counts"] == [600] * 10
    val = load_indices(tmp_path / "arrays" / "split.arrow")
    np.testing.assert_array_equal(np.bincount(train_labels[val], minlength=10), [600] * 10)
