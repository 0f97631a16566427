"""Seeded stratified train/validation split of the training rows.

The validation set takes exactly `per_class` rows of each of the 10 classes, drawn without replacement
by `np.random.default_rng(seed)`, so the same labels and seed always give the same rows. The training
set is the complement, so the two never share a row.
"""

from __future__ import annotations

import numpy as np

from tasks.core.errors import ConfigError, DataError
from tasks.data.dataset import CLASS_NAMES, NUM_CLASSES


def stratified_split(labels: np.ndarray, per_class: int, seed: int) -> np.ndarray:
    """Sorted int64 row indices of the validation set: `per_class` rows from each class."""
    labels = np.asarray(labels)
    if isinstance(per_class, bool) or not isinstance(per_class, (int, np.integer)) or per_class < 0:
        raise ConfigError(f"split per_class: expected a non-negative integer, found {per_class!r}; fix the config")
    if labels.ndim != 1:
        raise DataError(f"training labels: expected a 1-D array, found shape {labels.shape}; rebuild with PrepareData")
    if labels.size and (labels.min() < 0 or labels.max() >= NUM_CLASSES):
        raise DataError(
            f"training labels: expected classes 0-{NUM_CLASSES - 1}, found {int(labels.min())}..{int(labels.max())}; "
            "rebuild the cache with PrepareData"
        )
    counts = np.bincount(labels.astype(np.int64), minlength=NUM_CLASSES)
    short = [c for c in range(NUM_CLASSES) if counts[c] < per_class + 1]
    if short:
        found = ", ".join(f"class {c} ({CLASS_NAMES[c]}) has {counts[c]}" for c in short)
        raise DataError(
            f"training labels: expected at least {per_class + 1} rows per class ({per_class} for validation "
            f"and one left to train on), found {found}; lower split per_class or check the data"
        )
    # A stable sort groups row numbers by class in ascending order, so the draw depends only on the
    # labels and the seed, never on sort internals.
    rows_by_class = np.argsort(labels, kind="stable")
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
    rng = np.random.default_rng(seed)
    chosen = [
        rows_by_class[starts[c] + rng.choice(counts[c], size=per_class, replace=False)] for c in range(NUM_CLASSES)
    ]
    return np.sort(np.concatenate(chosen)).astype(np.int64, copy=False)


def training_indices(num_rows: int, val_indices: np.ndarray) -> np.ndarray:
    """Sorted int64 indices of the rows in range(num_rows) that are not in `val_indices`."""
    val_indices = np.asarray(val_indices)
    if val_indices.size and (val_indices.min() < 0 or val_indices.max() >= num_rows):
        raise DataError(
            f"validation indices: expected rows 0..{num_rows - 1}, "
            f"found {int(val_indices.min())}..{int(val_indices.max())}; "
            "the split does not belong to this training set: rerun PrepareData"
        )
    keep = np.ones(num_rows, dtype=bool)
    keep[val_indices] = False
    return np.flatnonzero(keep).astype(np.int64, copy=False)
