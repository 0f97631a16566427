"""What is measured per optimizer and per pair: small functions, each over one array.

The arrays are an optimizer's per-seed test accuracies, a pair's per-seed differences a − b (paired by
seed), and, where per-example predictions are given, the seeds × test examples matrix of 0/1
correctness (an optimizer) or of −1/0/1 differences (a pair, paired by seed and by image). The interval
machinery they feed is tasks.reporting.intervals.
"""

from __future__ import annotations

import numpy as np

from tasks.reporting.intervals import CONSTANT_SPREAD, Spread, over_seeds, over_seeds_and_test
from tasks.reporting.power import MIN_SEEDS


def spread(values: np.ndarray, matrix: np.ndarray | None = None) -> Spread | None:
    """The mean of `values` with its variance by source (the matrix adds the test sample); None below MIN_SEEDS."""
    if values.size < MIN_SEEDS:
        return None
    return over_seeds(values) if matrix is None else over_seeds_and_test(matrix)


def test_part(matrix: np.ndarray | None) -> Spread:
    """The test-sample variance a matrix shows below MIN_SEEDS seeds (0 from fewer than two): for sizing only."""
    if matrix is None or matrix.shape[0] < 2:
        return Spread(0.0, 0.0, 0.0, 0, 0 if matrix is None else matrix.shape[0], False)
    return over_seeds_and_test(matrix)


def mean(values: np.ndarray) -> float | None:
    return float(values.mean()) if values.size else None


def sd(values: np.ndarray) -> float | None:
    """Sample SD (ddof=1); None with fewer than two values."""
    return float(values.std(ddof=1)) if values.size > 1 else None


def wins(differences: np.ndarray) -> int:
    """Seeds on which A's accuracy is strictly higher than B's."""
    return int(np.count_nonzero(differences > CONSTANT_SPREAD))


def ties(differences: np.ndarray) -> int:
    """Seeds on which A and B scored the same (a tie is no win for either)."""
    return int(np.count_nonzero(np.abs(differences) <= CONSTANT_SPREAD))


def win_fraction(differences: np.ndarray) -> float | None:
    """P(A > B): the fraction of paired seeds on which A is strictly better; ties count as no win."""
    return wins(differences) / differences.size if differences.size else None
