"""The work behind DecodeData and PrepareData: decode the raw IDX files into the Arrow cache, and draw
the split. The manifest and the split records name files relative to the artifacts root, so a copied or
moved root verifies its own files (tasks.data.verify)."""

from __future__ import annotations

import hashlib
import sys

import numpy as np

from tasks.core.errors import DataError
from tasks.core.faults import crash_point
from tasks.core.layout import Layout
from tasks.core.storage import sha256_file, write_bytes_atomic, write_json_atomic
from tasks.data.arrays import encode_indices, load_arrays, write_arrays
from tasks.data.dataset import NUM_CLASSES, RAW_FILES
from tasks.data.idx import decode_pair
from tasks.data.split import stratified_split


def _pairs() -> dict[str, tuple[str, str]]:
    """{split: (images file name, labels file name)} from the published file list."""
    by_split: dict[str, dict[str, str]] = {}
    for raw in RAW_FILES.values():
        by_split.setdefault(raw.split, {})[raw.kind] = raw.name
    return {split: (kinds["images"], kinds["labels"]) for split, kinds in by_split.items()}


def _fetch_record(paths: Layout, fetch_records: dict[str, dict], name: str) -> dict:
    record = fetch_records.get(name)
    if not record or "payload_sha256" not in record:
        raise DataError(
            f"{paths.raw_record(name)}: expected a fetch record with a payload_sha256 for {name}, "
            f"found {'none' if not record else 'a record without it'}; rerun FetchFile for {name}"
        )
    return record


def decode_dataset(paths: Layout, fetch_records: dict[str, dict]) -> dict:
    """Decode the four raw .gz files into data/arrays/{train,test}.arrow, then write the data manifest last.

    Each decoded payload's sha256 must equal the one its fetch record verified, so the cache is built
    from exactly the bytes that were checked.
    """
    manifest: dict[str, dict] = {"files": {}, "arrays": {}}
    pairs = _pairs()
    from tqdm import tqdm  # a bar only where someone watches; the train images take about a second

    with tqdm(total=len(pairs), desc="decode IDX", unit="split", disable=not sys.stderr.isatty()) as progress:
        for split, names in pairs.items():
            records = {name: _fetch_record(paths, fetch_records, name) for name in names}
            images, labels, info = decode_pair(paths.raw_file(names[0]), paths.raw_file(names[1]))
            for name in names:
                decoded_sha256 = info["files"][name]["payload_sha256"]
                if decoded_sha256 != records[name]["payload_sha256"]:
                    raise DataError(
                        f"{paths.raw_file(name)}: expected payload sha256 {records[name]['payload_sha256']} "
                        f"(from its fetch record), found {decoded_sha256}; the file changed after it was "
                        "verified: quarantine it and rerun FetchFile"
                    )
                manifest["files"][name] = {
                    "source": records[name].get("source"),
                    "gz_sha256": records[name].get("gz_sha256"),
                    "payload_sha256": decoded_sha256,
                    "rows": info["rows"],
                }
            arrow_path = paths.arrays_file(split)
            write_arrays(arrow_path, images, labels)
            manifest["arrays"][split] = {
                "path": paths.relative(arrow_path),
                "rows": info["rows"],
                "sha256": sha256_file(arrow_path),
            }
            progress.update(1)
    crash_point("decode.arrays-written")
    write_json_atomic(paths.manifest, manifest)
    return manifest


def make_split(paths: Layout, per_class: int, seed: int) -> dict:
    """Draw the stratified validation rows of train.arrow and write them, after their record; return the record.

    The record (rows, class counts, the split file's sha256) lands first and the split file last, so the
    split file marks completion and VerifyData can check it against its record.
    """
    _, labels = load_arrays(paths.train_arrow)
    val_indices = stratified_split(labels, per_class, seed)
    data = encode_indices(val_indices)
    record = split_record(paths, labels, val_indices, per_class, seed, hashlib.sha256(data).hexdigest())
    write_json_atomic(paths.split_record(per_class, seed), record)
    write_bytes_atomic(paths.split_arrow(per_class, seed), data)
    return record


def split_record(
    paths: Layout, labels: np.ndarray, val_indices: np.ndarray, per_class: int, seed: int, sha256: str
) -> dict:
    """What the record of a split file says: where it is, its rows per class, and its sha256."""
    class_counts = np.bincount(labels[val_indices], minlength=NUM_CLASSES)
    return {
        "path": paths.relative(paths.split_arrow(per_class, seed)),
        "rows": int(val_indices.size),
        "per_class": per_class,
        "seed": seed,
        "class_counts": [int(count) for count in class_counts],
        "sha256": sha256,
    }
