"""The work behind PrepareData: decode the raw IDX files into the Arrow cache and draw the split."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from tasks.core.errors import DataError
from tasks.core.faults import crash_point
from tasks.core.storage import quarantine, read_json, sha256_file
from tasks.data.arrays import load_arrays, write_arrays, write_indices
from tasks.data.dataset import NUM_CLASSES, RAW_FILES
from tasks.data.idx import decode_pair
from tasks.data.split import stratified_split


def _pairs() -> dict[str, tuple[str, str]]:
    """{split: (images file name, labels file name)} from the published file list."""
    by_split: dict[str, dict[str, str]] = {}
    for raw in RAW_FILES.values():
        by_split.setdefault(raw.split, {})[raw.kind] = raw.name
    return {split: (kinds["images"], kinds["labels"]) for split, kinds in by_split.items()}


def _fetch_record(raw_dir: Path, fetch_records: dict[str, dict], name: str) -> dict:
    record = fetch_records.get(name)
    if not record or "payload_sha256" not in record:
        raise DataError(
            f"{raw_dir / (name + '.json')}: expected a fetch record with a payload_sha256 for {name}, "
            f"found {'none' if not record else 'a record without it'}; rerun FetchFile for {name}"
        )
    return record


def decode_dataset(raw_dir: Path, arrays_dir: Path, fetch_records: dict[str, dict]) -> dict:
    """Decode the four raw .gz files into arrays_dir/{train,test}.arrow and return the data manifest.

    Each decoded payload's sha256 must equal the one its fetch record verified, so the cache is built
    from exactly the bytes that were checked.
    """
    raw_dir, arrays_dir = Path(raw_dir), Path(arrays_dir)
    manifest: dict[str, dict] = {"files": {}, "arrays": {}}
    pairs = _pairs()
    from tqdm import tqdm  # a bar only where someone watches; the train images take about a second

    with tqdm(total=len(pairs), desc="decode IDX", unit="split", disable=not sys.stderr.isatty()) as progress:
        for split, names in pairs.items():
            records = {name: _fetch_record(raw_dir, fetch_records, name) for name in names}
            images, labels, info = decode_pair(raw_dir / names[0], raw_dir / names[1])
            for name in names:
                decoded_sha256 = info["files"][name]["payload_sha256"]
                if decoded_sha256 != records[name]["payload_sha256"]:
                    raise DataError(
                        f"{raw_dir / name}: expected payload sha256 {records[name]['payload_sha256']} "
                        f"(from its fetch record), found {decoded_sha256}; the file changed after it was "
                        "verified: quarantine it and rerun FetchFile"
                    )
                manifest["files"][name] = {
                    "source": records[name].get("source"),
                    "gz_sha256": records[name].get("gz_sha256"),
                    "payload_sha256": decoded_sha256,
                    "rows": info["rows"],
                }
            arrow_path = arrays_dir / f"{split}.arrow"
            write_arrays(arrow_path, images, labels)
            manifest["arrays"][split] = {
                "path": str(arrow_path),
                "rows": info["rows"],
                "sha256": sha256_file(arrow_path),
            }
            progress.update(1)
    crash_point("decode.arrays-written")
    return manifest


def make_split(train_arrow: Path, out_path: Path, per_class: int, seed: int) -> dict:
    """Draw the stratified validation rows of `train_arrow`, write them to `out_path`, and describe them."""
    _, labels = load_arrays(train_arrow)
    val_indices = stratified_split(labels, per_class, seed)
    write_indices(out_path, val_indices)
    class_counts = np.bincount(labels[val_indices], minlength=NUM_CLASSES)
    return {
        "rows": int(val_indices.size),
        "per_class": per_class,
        "seed": seed,
        "class_counts": [int(count) for count in class_counts],
    }


def verify_data(raw_dir: Path, manifest_path: Path, expected_payload_sha256: dict[str, str]) -> dict:
    """Re-check, cheaply, that the raw files and the Arrow cache are still the bytes that were verified.

    Each raw .gz must match its fetch record (size and sha256, no decompression) and that record the
    expected payload checksum; each Arrow file must match the sha256 in the manifest. A file that fails
    is quarantined, and so is the manifest, so that the next run fetches and decodes afresh; then a
    DataError lists every problem and where each file went.
    """
    from tasks.data.fetch import verify_raw_file

    raw_dir, manifest_path = Path(raw_dir), Path(manifest_path)
    manifest = read_json(manifest_path)
    problems: list[str] = []
    checked: dict[str, str] = {}
    for name in RAW_FILES:
        path = raw_dir / name
        try:
            record = read_json(raw_dir / f"{name}.json")
            if record.get("payload_sha256") != expected_payload_sha256[name]:
                raise DataError(
                    f"{path}: its record says payload sha256 {record.get('payload_sha256')}, "
                    f"expected {expected_payload_sha256[name]}"
                )
            verify_raw_file(path, record)
            checked[name] = record["gz_sha256"]
        except (DataError, OSError, ValueError) as exc:
            problems.append(_set_aside(path, str(exc)))
    for entry in manifest.get("arrays", {}).values():
        path = Path(entry["path"])
        found = sha256_file(path) if path.is_file() else "no file"
        if found != entry["sha256"]:
            problems.append(
                _set_aside(path, f"{path}: expected sha256 {entry['sha256']} (from {manifest_path}), found {found}")
            )
        else:
            checked[path.name] = found
    if problems:
        moved = quarantine(manifest_path, "set aside by the nightly verification: " + "; ".join(problems))
        raise DataError(
            "the data changed since it was verified:\n  "
            + "\n  ".join(problems)
            + f"\nthe manifest was moved to {moved}; rerun and the files will be fetched and decoded again"
        )
    return {"verified": checked}


def _set_aside(path: Path, reason: str) -> str:
    if not path.exists():
        return reason
    return f"{reason} (quarantined to {quarantine(path, reason)})"
