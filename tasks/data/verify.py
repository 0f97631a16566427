"""The work behind VerifyData: re-check, cheaply, that the data files are still the bytes that were verified.

Each raw .gz must match its fetch record (size and sha256, no decompression) and that record the expected
payload checksum; each Arrow file must match the sha256 in the manifest; each split file the sha256 in
its record. Paths in the manifest are relative to the artifacts root, so a copied root verifies its own
files. A manifest of the older format (absolute paths) is migrated when its paths lie inside this root
and refused when they do not: it would vouch for another root's files.
"""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath

import numpy as np

from tasks.core.errors import DataError
from tasks.core.layout import Layout
from tasks.core.quarantine import quarantine
from tasks.core.storage import read_json, sha256_file, write_json_atomic
from tasks.data.arrays import load_arrays, load_indices
from tasks.data.dataset import RAW_FILES
from tasks.data.prepare import split_record
from tasks.data.split import stratified_split

SPLIT_NAME = re.compile(r"split-v(?P<per_class>\d+)-s(?P<seed>\d+)\.arrow")


def verify_data(paths: Layout, expected_payload_sha256: dict[str, str], date: str) -> dict:
    """Verify the raw files, the Arrow cache and the splits; write the night's record last and return it.

    A raw or Arrow file that fails is quarantined, and so is the manifest, so that the next run fetches and
    decodes afresh; a split file that fails is quarantined and drawn again. Then a DataError lists every
    problem and where each file went. The caller holds the manifest's lock.
    """
    from tasks.data.fetch import verify_raw_file

    manifest = read_json(paths.manifest)
    problems: list[str] = []
    checked: dict[str, str] = {}
    for name in RAW_FILES:
        path = paths.raw_file(name)
        try:
            record = read_json(paths.raw_record(name))
            if record.get("payload_sha256") != expected_payload_sha256[name]:
                raise DataError(
                    f"{path}: its record says payload sha256 {record.get('payload_sha256')}, "
                    f"expected {expected_payload_sha256[name]}"
                )
            verify_raw_file(path, record)
            checked[name] = record["gz_sha256"]
        except (DataError, OSError, ValueError) as exc:
            problems.append(_set_aside(path, str(exc)))
    arrays = _arrays_of(paths, manifest)
    for path, expected in arrays.items():
        found = sha256_file(path) if path.is_file() else "no file"
        if found != expected:
            problems.append(
                _set_aside(path, f"{path}: expected sha256 {expected} (from {paths.manifest}), found {found}")
            )
        else:
            checked[path.name] = found
    if problems:
        moved = quarantine(paths.manifest, "set aside by the nightly verification: " + "; ".join(problems))
        problems.append(f"the manifest was moved to {moved}; rerun and the files will be fetched and decoded again")
    else:
        problems += _verify_splits(paths, checked)
    if problems:
        raise DataError("the data changed since it was verified:\n  " + "\n  ".join(problems))
    record = {"date": date, "verified": checked}
    write_json_atomic(paths.verified_record(date), record)
    return record


def _arrays_of(paths: Layout, manifest: dict) -> dict[Path, str]:
    """{Arrow file: its sha256} from the manifest; an old manifest's absolute paths are migrated in place."""
    redo = f"move {paths.manifest} aside and rerun: DecodeData rebuilds it from the raw files under {paths.root}"
    arrays, migrated = {}, False
    for split, entry in manifest.get("arrays", {}).items():
        stored = str(entry["path"])
        if Path(stored).is_absolute():
            relative = _inside(Path(stored), paths.root)
            if relative is None:
                raise DataError(
                    f"{paths.manifest}: expected the {split} array under the artifacts root {paths.root}, found "
                    f"{stored}: the manifest was copied from another root and would vouch for its files; {redo}"
                )
            entry["path"], migrated = relative, True
        elif ".." in PurePosixPath(stored).parts:
            raise DataError(f"{paths.manifest}: expected a path inside the artifacts root, found {stored!r}; {redo}")
        arrays[paths.root / entry["path"]] = entry["sha256"]
    if migrated:
        write_json_atomic(paths.manifest, manifest)  # from now on the copy of a root stays valid
    return arrays


def _inside(path: Path, root: Path) -> str | None:
    """`path` relative to `root` (as written, or both resolved), or None when it lies outside."""
    for candidate, base in ((path, root), (path.resolve(), root.resolve())):
        try:
            return candidate.relative_to(base).as_posix()
        except ValueError:
            continue
    return None


def _verify_splits(paths: Layout, checked: dict[str, str]) -> list[str]:
    """Check each split file against its record; a split drawn before records existed gets one, if it is right."""
    problems = []
    for split_path in sorted(paths.arrays_dir.glob("split-v*-s*.arrow")):
        match = SPLIT_NAME.fullmatch(split_path.name)
        if match is None:
            continue
        per_class, seed = int(match["per_class"]), int(match["seed"])
        record_path = paths.split_record(per_class, seed)
        found = sha256_file(split_path)
        if not record_path.exists():
            problem = _adopt_legacy_split(paths, split_path, per_class, seed, found)
        else:
            expected = read_json(record_path).get("sha256")
            problem = (
                None
                if found == expected
                else f"{split_path}: expected sha256 {expected} (from {record_path}), found {found}"
            )
        if problem is None:
            checked[split_path.name] = found
        else:
            problems.append(_set_aside(split_path, problem) + "; rerun and PrepareData draws it again")
    return problems


def _adopt_legacy_split(paths: Layout, split_path: Path, per_class: int, seed: int, sha256: str) -> str | None:
    """Record a split file written before split records existed, if it is the split its name says; else why not."""
    _, labels = load_arrays(paths.train_arrow)
    try:
        expected = stratified_split(labels, per_class, seed)
    except DataError as exc:
        return f"{split_path}: its name asks for a split that {paths.train_arrow} cannot give ({exc})"
    if not np.array_equal(load_indices(split_path), expected):
        return f"{split_path}: expected the rows of split v{per_class} s{seed} of {paths.train_arrow}, found others"
    write_json_atomic(
        paths.split_record(per_class, seed), split_record(paths, labels, expected, per_class, seed, sha256)
    )
    return None


def _set_aside(path: Path, reason: str) -> str:
    if not path.exists():
        return reason
    return f"{reason} (quarantined to {quarantine(path, reason)})"
