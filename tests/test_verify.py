"""VerifyData's work: the raw files, the Arrow cache and the split files of *this* artifacts root, checked
against their records; a copied root, an old manifest and a doctored split, each on real files."""

from __future__ import annotations

import hashlib
import json
import shutil

import pytest

from tasks.core.errors import DataError
from tasks.core.layout import Layout
from tasks.core.storage import QUARANTINE_DIR, write_json_atomic
from tasks.data.arrays import write_indices
from tasks.data.prepare import decode_dataset, make_split
from tasks.data.verify import verify_data
from tests import synthetic
from tests.test_prepare import fetch_records

TRAIN, TEST = 120, 40


def expected_checksums() -> dict[str, str]:
    return {name: hashlib.sha256(payload).hexdigest() for name, payload in synthetic.payloads(TRAIN, TEST).items()}


def build_data_stage(root) -> Layout:
    """What FetchFile ×4, DecodeData and PrepareData(3, 5) leave under `root`."""
    paths = Layout(root)
    synthetic.write_raw_dir(paths.raw_dir, train_count=TRAIN, test_count=TEST)
    records = fetch_records(paths.raw_dir, expected_checksums(), "file:///mirror")
    for name, record in records.items():
        write_json_atomic(paths.raw_record(name), record)
    write_json_atomic(paths.manifest, decode_dataset(paths, records))
    make_split(paths, per_class=3, seed=5)
    return paths


def flip_a_byte(path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def quarantined(folder) -> list[str]:
    return sorted(p.name.split(".20")[0] for p in (folder / QUARANTINE_DIR).glob("*") if "reason" not in p.name)


def test_an_intact_stage_verifies_every_file(tmp_path):
    paths = build_data_stage(tmp_path / "artifacts")
    verified = verify_data(paths, expected_checksums(), "2026-01-01")["verified"]
    assert sorted(verified) == sorted([*synthetic.payloads(1, 1), "train.arrow", "test.arrow", "split-v3-s5.arrow"])


def test_a_copied_root_verifies_its_own_files_not_the_original(tmp_path):
    original = build_data_stage(tmp_path / "a")
    copy = Layout(tmp_path / "b")
    shutil.copytree(original.root, copy.root)
    flip_a_byte(copy.train_arrow)  # the copy went bad; the original is intact

    with pytest.raises(DataError) as failed:
        verify_data(copy, expected_checksums(), "2026-01-01")

    assert f"{copy.train_arrow}: expected sha256" in str(failed.value)
    assert quarantined(copy.arrays_dir) == ["train.arrow"] and quarantined(copy.root / "data") == ["manifest.json"]
    verify_data(original, expected_checksums(), "2026-01-01")  # untouched


def test_an_old_manifest_with_absolute_paths_inside_the_root_is_migrated(tmp_path):
    paths = build_data_stage(tmp_path / "artifacts")
    manifest = json.loads(paths.manifest.read_text())
    for split in ("train", "test"):
        manifest["arrays"][split]["path"] = str(paths.arrays_file(split))  # the format before relative paths
    write_json_atomic(paths.manifest, manifest)

    verify_data(paths, expected_checksums(), "2026-01-01")

    stored = json.loads(paths.manifest.read_text())["arrays"]
    assert {split: entry["path"] for split, entry in stored.items()} == {
        "train": "data/arrays/train.arrow",
        "test": "data/arrays/test.arrow",
    }


def test_an_old_manifest_pointing_into_another_root_is_refused(tmp_path):
    original = build_data_stage(tmp_path / "a")
    manifest = json.loads(original.manifest.read_text())
    for split in ("train", "test"):
        manifest["arrays"][split]["path"] = str(original.arrays_file(split))
    write_json_atomic(original.manifest, manifest)
    copy = Layout(tmp_path / "b")
    shutil.copytree(original.root, copy.root)
    flip_a_byte(copy.train_arrow)

    with pytest.raises(DataError) as failed:
        verify_data(copy, expected_checksums(), "2026-01-01")

    message = str(failed.value)
    # the manifest is stored key-sorted, so "test" comes first
    assert f"{copy.manifest}: expected the test array under the artifacts root {copy.root}" in message
    assert f"found {original.test_arrow}" in message and "copied from another root" in message
    assert f"move {copy.manifest} aside and rerun" in message


def test_a_doctored_split_is_caught_and_drawn_again(tmp_path):
    paths = build_data_stage(tmp_path / "artifacts")
    write_indices(paths.split_arrow(3, 5), list(range(30)))  # a well-formed split of the wrong rows

    with pytest.raises(DataError) as failed:
        verify_data(paths, expected_checksums(), "2026-01-01")

    assert f"{paths.split_arrow(3, 5)}: expected sha256" in str(failed.value)
    assert "PrepareData draws it again" in str(failed.value)
    assert quarantined(paths.arrays_dir) == ["split-v3-s5.arrow"]
    assert paths.manifest.exists()  # the cache itself is fine: no re-decode
    make_split(paths, per_class=3, seed=5)  # what the rerun's PrepareData does
    verify_data(paths, expected_checksums(), "2026-01-01")


def test_a_split_from_before_records_is_adopted_only_when_right(tmp_path):
    paths = build_data_stage(tmp_path / "artifacts")
    record = json.loads(paths.split_record(3, 5).read_text())
    paths.split_record(3, 5).unlink()

    verify_data(paths, expected_checksums(), "2026-01-01")
    assert json.loads(paths.split_record(3, 5).read_text()) == record

    paths.split_record(3, 5).unlink()
    write_indices(paths.split_arrow(3, 5), list(range(30)))
    with pytest.raises(DataError, match="expected the rows of split v3 s5"):
        verify_data(paths, expected_checksums(), "2026-01-01")
    assert not paths.split_record(3, 5).exists()
