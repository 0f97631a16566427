"""The interval machinery (tasks.reporting.intervals) against independent computations: scipy's own
t-tests, a two-way ANOVA written out by loops, exact coverage by numerical integration, binomial sums."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.integrate
import scipy.stats

from tasks.reporting import intervals
from tasks.reporting.intervals import Spread, effective_df, over_seeds, over_seeds_and_test, proportion_interval


def test_over_seeds_is_the_one_sample_and_the_paired_t_interval():
    a = np.array([0.8812, 0.8790, 0.8845, 0.8801, 0.8833])
    b = np.array([0.8760, 0.8781, 0.8790, 0.8755, 0.8809])
    spread = over_seeds(a - b)
    reference = scipy.stats.ttest_rel(a, b)
    for level in (0.95, 0.99):
        assert spread.interval(level) == pytest.approx(tuple(reference.confidence_interval(level)), rel=1e-12)
    assert spread.p_value() == pytest.approx(reference.pvalue, rel=1e-10)
    assert over_seeds(a).interval(0.95) == pytest.approx(
        tuple(scipy.stats.ttest_1samp(a, 0).confidence_interval(0.95)), rel=1e-12
    )
    # Width by hand: 2 t(0.975, 4) s/√5.
    low, high = spread.interval(0.95)
    assert high - low == pytest.approx(2 * scipy.stats.t.ppf(0.975, 4) * (a - b).std(ddof=1) / math.sqrt(5))
    constant = over_seeds(np.full(3, 0.002))
    assert constant.interval(0.95) == (0.002, 0.002) and constant.p_value() == 0.0
    assert over_seeds(np.zeros(4)).p_value() == 1.0


def two_way_by_loops(matrix: np.ndarray) -> tuple[float, float, float]:
    """Mean squares of a two-way layout without replication, written out term by term."""
    rows, columns = matrix.shape
    grand = sum(sum(row) for row in matrix) / (rows * columns)
    row_means = [sum(row) / columns for row in matrix]
    column_means = [sum(matrix[r][c] for r in range(rows)) / rows for c in range(columns)]
    ms_rows = columns * sum((m - grand) ** 2 for m in row_means) / (rows - 1)
    ms_columns = rows * sum((m - grand) ** 2 for m in column_means) / (columns - 1)
    residual = sum(
        (matrix[r][c] - row_means[r] - column_means[c] + grand) ** 2 for r in range(rows) for c in range(columns)
    )
    return ms_rows, ms_columns, residual / ((rows - 1) * (columns - 1))


def test_the_two_way_decomposition_matches_the_anova_written_out():
    rng = np.random.default_rng(4)
    difficulty = rng.uniform(0.3, 0.99, 40)
    matrix = (rng.random((4, 40)) < difficulty).astype(np.int8)
    ms_seeds, ms_examples, ms_residual = two_way_by_loops(matrix.astype(float))
    spread = over_seeds_and_test(matrix)
    cells = matrix.size
    assert spread.estimate == pytest.approx(matrix.mean())
    assert spread.seed_variance == pytest.approx(ms_seeds / cells)
    # The seed part is exactly s²/n of the per-seed accuracies: the seeds-only interval's variance.
    assert spread.seed_variance == pytest.approx(over_seeds(matrix.mean(axis=1)).seed_variance)
    assert spread.test_variance == pytest.approx((ms_examples - ms_residual) / cells)
    satterthwaite = (ms_seeds + ms_examples - ms_residual) ** 2 / (
        ms_seeds**2 / 3 + ms_examples**2 / 39 + ms_residual**2 / (3 * 39)
    )
    assert spread.df == pytest.approx(math.sqrt(3 * satterthwaite))
    assert spread.includes_test and spread.n_seeds == 4
    # Each image missed by exactly one of the 4 seeds (which one varies): every image has the same mean
    # over seeds, no image effect shows (MS_examples = 0 < MS_residual), so the test part is 0 and the
    # seeds-only interval remains.
    shifted = np.ones((4, 40), dtype=np.int8)
    shifted[[(c * c + c // 7) % 4 for c in range(40)], range(40)] = 0
    assert shifted.mean(axis=1).std() > 0 and two_way_by_loops(shifted.astype(float))[1] == pytest.approx(0)
    flat = over_seeds_and_test(shifted)
    assert (flat.test_variance, flat.df) == (0.0, 3) and flat.includes_test


def test_the_decomposition_is_unbiased_for_the_variance_of_the_grand_mean():
    # Crossed model with known parts: seed effect (SD 0.05), image effect (SD 0.2), interaction (SD 0.3).
    rng = np.random.default_rng(5)
    seeds, examples, draws = 4, 30, 4000
    true_variance = 0.05**2 / seeds + 0.2**2 / examples + 0.3**2 / (seeds * examples)
    cells = (
        rng.normal(0, 0.05, (draws, seeds, 1))
        + rng.normal(0, 0.2, (draws, 1, examples))
        + rng.normal(0, 0.3, (draws, seeds, examples))
    )
    estimated = [over_seeds_and_test(matrix) for matrix in cells]
    mean_estimate = np.mean([s.seed_variance + s.test_variance for s in estimated])
    assert mean_estimate == pytest.approx(true_variance, rel=0.03)
    assert np.var(cells.mean(axis=(1, 2))) == pytest.approx(true_variance, rel=0.06)  # the formula itself


def exact_coverage(seeds: int, ratio: float, df_rule) -> float:
    """Coverage of mean ± t(0.975, df) · √(S²/n + τ²), integrated over S² ~ σ² χ²(n−1)/(n−1).

    Units: σ²/n = 1, τ² = ratio (known), so the estimate is N(0, 1 + ratio).
    """
    k = seeds - 1

    def integrand(u: float) -> float:
        seed_variance = u / k
        df = df_rule(k, seed_variance, ratio)
        spread = Spread(0.0, seed_variance, ratio, df, seeds, True)
        half_width = spread.interval(0.95)[1]
        return scipy.stats.chi2.pdf(u, k) * (2 * scipy.stats.norm.cdf(half_width / math.sqrt(1 + ratio)) - 1)

    return scipy.integrate.quad(integrand, 0, np.inf, limit=200)[0]


def satterthwaite_only(k, seed_variance, ratio):
    return k * (1 + ratio / seed_variance) ** 2


def production(k, seed_variance, ratio):
    return float(effective_df(k, satterthwaite_only(k, seed_variance, ratio)))


RATIOS = (0.003, 0.01, 0.03, 0.1, 0.3, 1, 2, 4, 10, 30, 100, 1000)


@pytest.mark.parametrize(("seeds", "low", "high"), [(3, 0.940, 0.965), (5, 0.948, 0.962), (10, 0.949, 0.958)])
def test_the_combined_degrees_of_freedom_hold_95_percent_at_every_ratio_of_seed_to_test_noise(seeds, low, high):
    coverage = [exact_coverage(seeds, ratio, production) for ratio in RATIOS]
    assert low <= min(coverage) and max(coverage) <= high, coverage
    # Satterthwaite's df alone is what the production rule improves on: at 3 seeds it covers < 93%.
    if seeds == 3:
        assert min(exact_coverage(3, ratio, satterthwaite_only) for ratio in (0.03, 0.1, 0.3)) < 0.93


def test_clopper_pearson_never_collapses_and_covers_at_least_its_level():
    assert proportion_interval(0, 3, 0.95) == pytest.approx((0.0, 0.7076), abs=1e-4)
    assert proportion_interval(3, 3, 0.95) == pytest.approx((0.2924, 1.0), abs=1e-4)
    for n in (3, 5, 10):
        bounds = [proportion_interval(k, n, 0.95) for k in range(n + 1)]
        for p in np.linspace(0.01, 0.99, 99):
            covered = sum(scipy.stats.binom.pmf(k, n, p) for k, (lo, hi) in enumerate(bounds) if lo <= p <= hi)
            assert covered >= 0.95 - 1e-9, (n, p, covered)


def test_bonferroni_level():
    assert intervals.simultaneous_confidence(0.95, 3) == pytest.approx(1 - 0.05 / 3)
    assert intervals.simultaneous_confidence(0.95, 0) == 0.95
