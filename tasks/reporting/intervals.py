"""Interval machinery: a mean, its variance by source and its degrees of freedom, read as Student's t.

Nothing here knows about optimizers. A `Spread` is one estimated mean (an optimizer's accuracy, or a
pair's paired difference) with its variance split into the part that comes from seeds and the part that
comes from the test sample. Every interval and p-value of the report is read off one Spread with
Student's t, so an interval and its test always agree: the interval at level 1 − α excludes 0 exactly
when the two-sided p-value is below α. (scipy.special.stdtrit and stdtr are scipy.stats.t's quantile
and cdf without the per-call overhead of a distribution object, which the suite's simulation would feel.)

Two ways to build a Spread:
- `over_seeds(values)`: one number per seed (accuracies, or paired differences). Variance s²/n with n − 1
  degrees of freedom: the one-sample t interval, which for differences is the paired t-test's
  (scipy.stats.ttest_rel(...).confidence_interval()). It holds the test set fixed: it is an interval for
  the expected accuracy *on these test images*, over the seeds' noise only.
- `over_seeds_and_test(matrix)`: a seeds × test examples matrix (0/1 correctness of each run on each
  test image, or the −1/0/1 differences of two runs paired by seed and image). Seeds and test images are
  both samples, crossed: every seed is scored on every image. The variance of the grand mean of such an
  array is σ²_seed/n + σ²_example/N + σ²_interaction/(nN) (the two-way crossed random-effects
  decomposition, which needs no normality: Owen 2007, "The pigeonhole bootstrap", Ann. Appl. Stat.), and
  the two-way ANOVA mean squares estimate it without bias: (MS_seeds + MS_examples − MS_residual)/(nN).
  Its first part, MS_seeds/(nN), is exactly s²/n of the per-seed accuracies, so the seeds-only interval
  is the special case without the test part. The test part, max(0, MS_examples − MS_residual)/(nN), does
  not shrink with more seeds.

  Degrees of freedom: the seed part has n − 1, the test part about N. Satterthwaite's (1946) df for their
  sum is the textbook answer (the GUM's Welch–Satterthwaite for Type A plus Type B uncertainty), but at
  3 seeds it is liberal: the df is estimated from the same S² as the variance, and a small S² brings both
  a narrow interval and a high df. Its exact coverage dips to 92% where the test part is 3-30% of the
  seed part; treating the seed part's quantile as Student's and the test part's as normal (Banerjee
  1961; the fiducial Fisher–Behrens interval, GUM Supplement 1's Monte Carlo) errs the other way, up to
  97.6%. `effective_df` takes the geometric mean of n − 1 and Satterthwaite's df, √((n − 1) ν_S): with
  no test part it is n − 1 (the t interval), when the test part dominates it grows without bound (the
  normal interval), and its exact coverage, integrated numerically over the distribution of S² for every
  ratio of the two parts, stays within [94.2%, 96.3%] at 3 seeds and [95.0%, 96.0%] from 5
  (tests/test_intervals.py computes it).

  Why not a two-way bootstrap over seeds and images: resampling 3 seeds gives 10 distinct multisets and
  the percentile interval of a 3-value mean covers about 75%, not 95% (the failure this module replaces);
  the naive two-way bootstrap also counts the interaction twice (Owen 2007).

Proportions (the fraction of seeds on which A beats B) get the exact Clopper–Pearson interval
(scipy.stats.binomtest(k, n).proportion_ci()), which never collapses to [0, 0]: 0 wins in 3 is [0, 0.71].
Several pairs at once: `simultaneous_confidence` gives Bonferroni's level 1 − α/K, so K intervals at that
level all cover together with probability ≥ 1 − α.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import scipy.special
import scipy.stats

# Accuracies are multiples of 1e-4 (1/N in general); a smaller spread is floating-point rounding, not data.
CONSTANT_SPREAD = 1e-12


@dataclass(frozen=True)
class Spread:
    """A mean with its variance by source: `seed_variance` shrinks with seeds, `test_variance` does not."""

    estimate: float
    seed_variance: float
    test_variance: float
    df: float
    n_seeds: int
    includes_test: bool  # False: test images treated as fixed (no per-example data)

    @property
    def se(self) -> float:
        return math.sqrt(self.seed_variance + self.test_variance)

    def interval(self, confidence: float) -> tuple[float, float]:
        """The two-sided Student-t interval; [estimate, estimate] when the spread is zero."""
        if self.se <= CONSTANT_SPREAD:
            return self.estimate, self.estimate
        half_width = self.se * float(scipy.special.stdtrit(self.df, (1 + confidence) / 2))
        return self.estimate - half_width, self.estimate + half_width

    def p_value(self) -> float:
        """Two-sided t-test of mean 0; with zero spread 1 when the estimate is 0, else 0 (t is infinite)."""
        if self.se <= CONSTANT_SPREAD:
            return 1.0 if abs(self.estimate) <= CONSTANT_SPREAD else 0.0
        return float(2 * scipy.special.stdtr(self.df, -abs(self.estimate) / self.se))


def over_seeds(values: np.ndarray) -> Spread:
    """One value per seed (n ≥ 2): variance s²/n, n − 1 degrees of freedom; the test set is held fixed."""
    n = values.size
    return Spread(float(values.mean()), float(values.var(ddof=1)) / n, 0.0, n - 1, n, False)


def over_seeds_and_test(matrix: np.ndarray) -> Spread:
    """Seeds × test examples (n ≥ 2 rows): seed and test-sample variance of the grand mean, Satterthwaite df."""
    n, examples = matrix.shape
    values = np.asarray(matrix, dtype=np.float64)
    seed_means, example_means = values.mean(axis=1), values.mean(axis=0)
    grand = float(seed_means.mean())
    ms_seeds = examples * seed_means.var(ddof=1)
    ms_examples = n * example_means.var(ddof=1)
    residual_df = (n - 1) * (examples - 1)
    ss_residual = ((values - grand) ** 2).sum() - (n - 1) * ms_seeds - (examples - 1) * ms_examples
    ms_residual = max(float(ss_residual), 0.0) / residual_df
    seed_variance = ms_seeds / (n * examples)
    if ms_examples <= ms_residual:  # no image effect detectable: the test part is estimated as 0
        return Spread(grand, float(seed_variance), 0.0, n - 1, n, True)
    test_variance = (ms_examples - ms_residual) / (n * examples)
    satterthwaite = satterthwaite_df((ms_seeds, ms_examples, -ms_residual), (n - 1, examples - 1, residual_df))
    return Spread(grand, float(seed_variance), float(test_variance), float(effective_df(n - 1, satterthwaite)), n, True)


def effective_df(seed_df: float | np.ndarray, satterthwaite: float | np.ndarray) -> float | np.ndarray:
    """The degrees of freedom the intervals use: the geometric mean of the seed part's and Satterthwaite's.

    Satterthwaite's df alone is liberal at 3 seeds (92% at a small test share), n − 1 alone far too
    conservative when the test part dominates; see the module docstring.
    """
    return np.sqrt(seed_df * satterthwaite)


def satterthwaite_df(terms: Sequence[float], dfs: Sequence[float]) -> float:
    """Degrees of freedom of Σ terms, each a (signed) mean square with its own df (Satterthwaite 1946)."""
    total = sum(terms)
    denominator = sum(term**2 / df for term, df in zip(terms, dfs))
    return float(total**2 / denominator) if denominator > 0 else math.inf


@functools.lru_cache(maxsize=4096)  # binomtest's exact interval solves by root finding: ms per call
def proportion_interval(successes: int, trials: int, confidence: float) -> tuple[float, float]:
    """Clopper–Pearson (exact) interval of a binomial proportion; it covers at least `confidence`."""
    interval = scipy.stats.binomtest(successes, trials).proportion_ci(confidence, method="exact")
    return float(interval.low), float(interval.high)


def simultaneous_confidence(confidence: float, comparisons: int) -> float:
    """Bonferroni: K intervals at 1 − (1 − confidence)/K all cover together with probability ≥ confidence."""
    return 1 - (1 - confidence) / max(comparisons, 1)
