"""How many seeds would settle a pair: sized from the variance alone, never from the observed difference.

A pair is settled when its simultaneous interval (Bonferroni over K pairs, tasks.reporting.verdicts)
either excludes 0 (one optimizer beats the other) or lies inside ±margin (equivalent). An interval of
half-width h ≤ margin/2 always does one of the two: if it contains 0, every point of it is within 2h ≤
margin of 0. So the seeds needed is the smallest n whose half-width is at most margin/2 with probability
POWER, whatever the true difference; it depends on the variance only, which keeps the verdict's level
when the count is used to decide how many seeds to run (an internal pilot, tasks.reporting.seedplan).

With n seeds the half-width is t(1 − α/2K, ν) · √(S²/n + τ²): S² the sample variance of the per-seed
differences, σ² χ²(n − 1)/(n − 1) distributed, and τ² the test-sample part, which more seeds do not
shrink (tasks.reporting.intervals). Hence P(h ≤ m/2) = P(χ²(n − 1) ≤ (n − 1) n ((m/2t)² − τ²)/σ²),
scipy.special.chdtr. ν is the intervals' df at S² = σ², the test part's own df (about N) taken as
infinite. σ and τ are plugged in from the data: the promise "probability 0.8" holds if the SD is as
estimated. When z(1 − α/2K)·τ alone reaches m/2, no number of seeds can guarantee a verdict: the test
set is too small for the margin.

σ comes from, in this order: the pair's own differences (two seeds or more, spread > 0); the SD pooled
over every pair that has one; ASSUMED_SD otherwise. Every sentence says which.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import scipy.special

from tasks.reporting.intervals import effective_df

ALPHA = 0.05
POWER = 0.8
MIN_SEEDS = 3
MAX_SEEDS = 1000
# An assumption, used only when no pair has two seeds: seed-to-seed SDs of test accuracy of small
# Fashion-MNIST models are a few tenths of a point, and a difference of two runs spreads √2 times more.
ASSUMED_SD = 0.005

TEST_SET = "test set"  # Sizing.reason: the test-sample part alone is too wide for the margin
BEYOND = "beyond limit"  # Sizing.reason: more seeds than the limit would be needed


@dataclass(frozen=True)
class Sizing:
    """Seeds that settle a pair with probability POWER; None with a reason when no count up to the limit does."""

    seeds: int | None
    sd: float
    sd_source: str  # "observed", "pooled" or "assumed"
    test_sd: float  # √τ², 0 without per-example predictions
    limit: int  # the most seeds considered
    reason: str = ""  # TEST_SET or BEYOND when seeds is None


def pooled_sd(differences: Sequence[np.ndarray]) -> float | None:
    """√(Σ (n_i − 1) s_i² / Σ (n_i − 1)) over the pairs with two seeds or more and a non-zero spread."""
    usable = [d for d in differences if d.size > 1 and d.std(ddof=1) > 0]
    if not usable:
        return None
    return float(math.sqrt(sum((d.size - 1) * d.var(ddof=1) for d in usable) / sum(d.size - 1 for d in usable)))


def chosen_sd(differences: np.ndarray, pooled: float | None) -> tuple[float, str]:
    """The SD of differences to size with, and where it came from (see the module docstring)."""
    if differences.size > 1 and differences.std(ddof=1) > 0:
        return float(differences.std(ddof=1)), "observed"
    if pooled:
        return pooled, "pooled"
    return ASSUMED_SD, "assumed"


def settle_probability(n: np.ndarray, sd: float, test_variance: float, margin: float, quantile: float) -> np.ndarray:
    """P(half-width ≤ margin/2) with n seeds each (array), for SD `sd` and test part τ² (module docstring)."""
    if sd == 0:  # no seed spread: the half-width is the test part's alone, on infinite df
        allowed = (margin / (2 * scipy.special.ndtri(quantile))) ** 2 - test_variance
        return np.full(n.shape, float(allowed >= 0))
    satterthwaite = (n - 1) * (1 + test_variance * n / sd**2) ** 2  # the test part's df taken as infinite
    df = effective_df(n - 1, satterthwaite)
    allowed = (margin / (2 * scipy.special.stdtrit(df, quantile))) ** 2 - test_variance
    return np.where(allowed > 0, scipy.special.chdtr(n - 1, (n - 1) * n * np.maximum(allowed, 0) / sd**2), 0.0)


def seeds_to_settle(
    sd: float,
    sd_source: str,
    test_variance: float,
    margin: float,
    comparisons: int,
    *,
    limit: int = MAX_SEEDS,
    alpha: float = ALPHA,
    power: float = POWER,
) -> Sizing:
    """Smallest n in [MIN_SEEDS, limit] that settles a pair with probability `power` (module docstring)."""
    quantile = 1 - alpha / (2 * max(comparisons, 1))
    test_sd = math.sqrt(test_variance)
    if scipy.special.ndtri(quantile) * test_sd >= margin / 2:
        return Sizing(None, sd, sd_source, test_sd, limit, TEST_SET)
    top = max(limit, MIN_SEEDS)
    for n in (np.arange(MIN_SEEDS, min(top, 64) + 1), np.arange(65, top + 1)):  # most answers are small
        reached = np.flatnonzero(settle_probability(n, sd, test_variance, margin, quantile) >= power)
        if reached.size:
            return Sizing(int(n[reached[0]]), sd, sd_source, test_sd, limit)
    return Sizing(None, sd, sd_source, test_sd, limit, BEYOND)


def seeds_to_balance(sd: float, test_variance: float, *, limit: int = MAX_SEEDS) -> int:
    """Fewest seeds, in [MIN_SEEDS, limit], whose seed part σ²/n is no larger than the test part τ².

    For a pair the test set keeps undecided whatever the seed count (TEST_SET): past this n the seeds are
    the smaller share of the interval's variance, and any number more narrows its standard error by less
    than 1 − 1/√2 ≈ 29%. Like seeds_to_settle it reads the variance only.
    """
    if not test_variance > 0:
        raise ValueError(f"seeds_to_balance: expected a test-sample variance > 0, found {test_variance}")
    return int(min(max(limit, MIN_SEEDS), max(MIN_SEEDS, math.ceil(sd**2 / test_variance - 1e-9))))


def points(value: float) -> str:
    """An accuracy difference in percentage points, e.g. 0.0062 → '0.62'."""
    return f"{100 * value:.2f}"
