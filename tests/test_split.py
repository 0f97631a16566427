"""The stratified split: exact per-class counts, seeded determinism, a clean complement."""

from __future__ import annotations

import numpy as np
import pytest

from tasks.core.errors import ConfigError, DataError
from tasks.data.split import stratified_split, training_indices


@pytest.fixture
def labels() -> np.ndarray:
    # Unequal classes (class c has 30 + 3c rows), shuffled, as a real label file might be.
    labels = np.repeat(np.arange(10, dtype=np.uint8), 30 + 3 * np.arange(10))
    np.random.default_rng(0).shuffle(labels)
    return labels


def test_exact_count_from_each_class(labels):
    val = stratified_split(labels, per_class=7, seed=1)
    assert val.dtype == np.int64 and val.shape == (70,)
    assert np.all(np.diff(val) > 0)  # sorted, no repeats
    np.testing.assert_array_equal(np.bincount(labels[val], minlength=10), [7] * 10)


def test_same_seed_same_rows(labels):
    np.testing.assert_array_equal(stratified_split(labels, 7, seed=42), stratified_split(labels.copy(), 7, seed=42))


def test_different_seeds_differ(labels):
    assert not np.array_equal(stratified_split(labels, 7, seed=1), stratified_split(labels, 7, seed=2))


def test_training_indices_are_the_disjoint_complement(labels):
    val = stratified_split(labels, 7, seed=3)
    train = training_indices(labels.size, val)
    assert train.dtype == np.int64 and np.all(np.diff(train) > 0)
    assert np.intersect1d(train, val).size == 0
    np.testing.assert_array_equal(np.union1d(train, val), np.arange(labels.size))
    np.testing.assert_array_equal(np.bincount(labels[train], minlength=10), 30 + 3 * np.arange(10) - 7)


def test_class_too_small_names_the_class_and_counts(labels):
    # Class 0 has 30 rows: 30 for validation would leave none to train on.
    with pytest.raises(DataError) as excinfo:
        stratified_split(labels, per_class=30, seed=0)
    message = str(excinfo.value)
    assert "expected at least 31 rows per class" in message
    assert "class 0 (T-shirt/top) has 30" in message
    assert "class 1" not in message  # 33 rows is enough
    assert "lower split per_class" in message


def test_missing_class_is_too_small():
    labels = np.repeat(np.arange(9, dtype=np.uint8), 5)  # no class 9 at all
    with pytest.raises(DataError, match=r"class 9 \(Ankle boot\) has 0"):
        stratified_split(labels, per_class=1, seed=0)


def test_negative_per_class_is_a_config_error(labels):
    with pytest.raises(ConfigError, match="per_class: expected a non-negative integer, found -1"):
        stratified_split(labels, per_class=-1, seed=0)


def test_out_of_range_validation_indices(labels):
    with pytest.raises(DataError, match=r"expected rows 0\.\.9, found 0\.\.10"):
        training_indices(10, np.array([0, 10]))
