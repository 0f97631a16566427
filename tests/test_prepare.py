"""decode_dataset and make_split on a tiny synthetic dataset, and once on the real Debian files."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from tasks.core.errors import DataError
from tasks.core.layout import Layout
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
def paths(tmp_path) -> Layout:
    layout = Layout(tmp_path / "artifacts")
    synthetic.write_raw_dir(layout.raw_dir, train_count=120, test_count=40)
    return layout


def synthetic_records(raw_dir: Path) -> dict[str, dict]:
    digests = {
        name: hashlib.sha256(payload).hexdigest()
        for name, payload in synthetic.payloads(train_count=120, test_count=40).items()
    }
    return fetch_records(raw_dir, digests, "file:///mirror")


def test_round_trip_synthetic_to_arrow(paths):
    records = synthetic_records(paths.raw_dir)
    manifest = decode_dataset(paths, records)
    assert json.loads(paths.manifest.read_text()) == manifest  # the work function writes its target

    for split, count, seed in (("train", 120, 1), ("test", 40, 2)):
        source_images, source_labels = synthetic.make_images_labels(count, seed=seed)
        images, labels = load_arrays(paths.arrays_dir / f"{split}.arrow")
        np.testing.assert_array_equal(images, source_images)
        np.testing.assert_array_equal(labels, source_labels)
        arrays_entry = manifest["arrays"][split]
        assert arrays_entry == {
            "path": f"data/arrays/{split}.arrow",  # relative to the artifacts root: a copied root stays valid
            "rows": count,
            "sha256": sha256_file(paths.root / arrays_entry["path"]),
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


def test_payload_differing_from_fetch_record_is_refused(paths):
    records = synthetic_records(paths.raw_dir)
    records[synthetic.TEST_LABELS]["payload_sha256"] = "0" * 64
    with pytest.raises(DataError) as excinfo:
        decode_dataset(paths, records)
    message = str(excinfo.value)
    assert str(paths.raw_file(synthetic.TEST_LABELS)) in message
    assert f"expected payload sha256 {'0' * 64}" in message
    assert f"found {hashlib.sha256(synthetic.payloads(120, 40)[synthetic.TEST_LABELS]).hexdigest()}" in message
    assert "rerun FetchFile" in message
    assert not paths.test_arrow.exists()


def test_missing_fetch_record_is_refused(paths):
    records = synthetic_records(paths.raw_dir)
    del records[synthetic.TRAIN_LABELS]
    with pytest.raises(DataError) as excinfo:
        decode_dataset(paths, records)
    assert f"{paths.raw_record(synthetic.TRAIN_LABELS)}: expected a fetch record" in str(excinfo.value)
    assert "found none" in str(excinfo.value)


def test_corrupt_raw_file_is_refused_with_its_name(paths):
    path = paths.raw_file(synthetic.TRAIN_IMAGES)
    path.write_bytes(path.read_bytes()[:-20])
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte\.gz: expected a complete gzip stream"):
        decode_dataset(paths, synthetic_records(paths.raw_dir))


def test_make_split_writes_stratified_indices_after_their_record(paths):
    decode_dataset(paths, synthetic_records(paths.raw_dir))
    record = make_split(paths, per_class=3, seed=5)
    split_path = paths.split_arrow(3, 5)
    assert record == {
        "path": "data/arrays/split-v3-s5.arrow",
        "rows": 30,
        "per_class": 3,
        "seed": 5,
        "class_counts": [3] * 10,
        "sha256": sha256_file(split_path),
    }
    assert json.loads(paths.split_record(3, 5).read_text()) == record
    _, labels = load_arrays(paths.train_arrow)
    val = load_indices(split_path)
    assert val.dtype == np.int64 and np.all(np.diff(val) > 0)
    np.testing.assert_array_equal(np.bincount(labels[val], minlength=10), [3] * 10)
    split_path.unlink()
    make_split(paths, per_class=3, seed=5)
    np.testing.assert_array_equal(load_indices(split_path), val)


@pytest.mark.realdata
@pytest.mark.skipif(
    not Path(DEBIAN_DIR).is_dir(), reason=f"{DEBIAN_DIR} is absent: install the Debian package dataset-fashion-mnist"
)
def test_real_fashion_mnist_end_to_end(tmp_path):
    paths = Layout(tmp_path / "artifacts")
    paths.raw_dir.mkdir(parents=True)
    for name in RAW_FILES:
        paths.raw_file(name).symlink_to(Path(DEBIAN_DIR) / name)  # read in place: no 30 MB copy
    records = fetch_records(paths.raw_dir, {name: raw.payload_sha256 for name, raw in RAW_FILES.items()}, DEBIAN_DIR)
    manifest = decode_dataset(paths, records)
    assert manifest["arrays"]["train"]["rows"] == 60_000
    assert manifest["arrays"]["test"]["rows"] == 10_000
    assert {name: entry["rows"] for name, entry in manifest["files"].items()} == {
        name: raw.rows for name, raw in RAW_FILES.items()
    }

    train_images, train_labels = load_arrays(paths.train_arrow)
    assert train_images.shape == (60_000, 784)
    np.testing.assert_array_equal(np.bincount(train_labels, minlength=10), [6_000] * 10)

    summary = make_split(paths, per_class=600, seed=0)
    assert summary["rows"] == 6_000 and summary["class_counts"] == [600] * 10
    val = load_indices(paths.split_arrow(600, 0))
    np.testing.assert_array_equal(np.bincount(train_labels[val], minlength=10), [600] * 10)
