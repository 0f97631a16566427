"""How many seeds would a difference need, and the one plain sentence per pair of optimizers.

Power of the two-sided paired t-test at level ALPHA with n seeds, for a mean difference δ and a standard
deviation σ of the per-seed differences: P(|T| > t(1 − α/2, n − 1)), T noncentral t with n − 1 degrees of
freedom and noncentrality δ/σ·√n (scipy.stats.nct). The seeds needed is the smallest n whose power reaches
POWER, at least MIN_SEEDS (fewer give no interval here) and at most MAX_SEEDS. It takes the observed δ and
σ as if they were true, so from one or two seeds it is a rough guide, not a promise; and it is for one
comparison: Holm's correction over many pairs needs more.

σ comes from, in this order: the pair's own differences (two seeds or more, spread > 0); the SD pooled
over every pair that has one; ASSUMED_SD otherwise. Every sentence says which.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.stats

ALPHA = 0.05
POWER = 0.8
MIN_SEEDS = 3
MAX_SEEDS = 1000
# An assumption, used only when no pair has two seeds: seed-to-seed SDs of test accuracy of small
# Fashion-MNIST models are a few tenths of a point, and a difference of two runs spreads √2 times more.
ASSUMED_SD = 0.005


@dataclass(frozen=True)
class Estimate:
    """Seeds needed for a pair's observed difference, the σ used and where σ came from."""

    seeds: int | None
    sd: float | None
    sd_source: str  # "observed", "pooled", "assumed", or "none" when there is no difference to size
    reason: str = ""  # why `seeds` is None: "no difference", "more than MAX_SEEDS", "no seeds"


def pooled_sd(differences: Sequence[np.ndarray]) -> float | None:
    """√(Σ (n_i − 1) s_i² / Σ (n_i − 1)) over the pairs with two seeds or more and a non-zero spread."""
    usable = [d for d in differences if d.size > 1 and d.std(ddof=1) > 0]
    if not usable:
        return None
    return float(math.sqrt(sum((d.size - 1) * d.var(ddof=1) for d in usable) / sum(d.size - 1 for d in usable)))


def seeds_for_power(mean_difference: float, sd: float) -> int | None:
    """Smallest n in [MIN_SEEDS, MAX_SEEDS] whose paired t-test reaches POWER; None if none does."""
    if mean_difference == 0 or not sd > 0:
        return None
    for n in (np.arange(2, 51), np.arange(51, MAX_SEEDS + 1)):  # most answers are small: try those first
        df = n - 1
        critical = scipy.stats.t.ppf(1 - ALPHA / 2, df)
        noncentrality = abs(mean_difference) / sd * np.sqrt(n)
        # scipy returns NaN for the far lower tail once it is negligible; it adds nothing to the power there.
        lower_tail = np.nan_to_num(scipy.stats.nct.cdf(-critical, df, noncentrality), nan=0.0)
        achieved = scipy.stats.nct.sf(critical, df, noncentrality) + lower_tail
        reached = np.flatnonzero(achieved >= POWER)
        if reached.size:
            return max(MIN_SEEDS, int(n[reached[0]]))
    return None


def estimate(mean_difference: float | None, sd: float | None, n_seeds: int, pooled: float | None) -> Estimate:
    if mean_difference is None:
        return Estimate(None, None, "none", "no seeds")
    if mean_difference == 0:
        return Estimate(None, None, "none", "no difference")
    if n_seeds > 1 and sd:
        used, source = sd, "observed"
    elif pooled:
        used, source = pooled, "pooled"
    else:
        used, source = ASSUMED_SD, "assumed"
    seeds = seeds_for_power(mean_difference, used)
    return Estimate(seeds, used, source, "" if seeds else f"more than {MAX_SEEDS}")


def points(value: float) -> str:
    """An accuracy difference in percentage points, e.g. 0.0062 → '0.62'."""
    return f"{100 * value:.2f}"


def sentence(pair: Mapping[str, Any], found: Estimate | None, tested: int, lost: Mapping[str, int]) -> str:
    """What the data supports about one pair, in one sentence (see tasks.reporting.statistics)."""
    a, b, n = pair["a"], pair["b"], pair["n_seeds"]
    seeds = f"{n} seed{'s' if n != 1 else ''}"
    # Runs without a test accuracy (diverged) are named inside the closing parenthesis, never hidden.
    note = "".join(
        f"; {name}'s {lost[name]} run(s) without a test accuracy left out" for name in (a, b) if lost.get(name)
    )
    if n == 0:
        left_out = f" ({note[2:]})" if note else ""
        return f"{a} and {b} share no seed on which both have a test accuracy: nothing to compare{left_out}."
    difference = pair["mean_difference"]
    if n < MIN_SEEDS:
        text = f"too few seeds to compare {a} and {b}: {seeds} ({MIN_SEEDS} needed for an interval)"
        if found.reason == "no difference":
            return f"{text}; they scored the same, so no seed count can be derived from these runs{note}."
        size = f"the observed difference of {points(abs(difference))} points"
        sd_text = {
            "observed": f"SD of differences {points(found.sd)} points from these {seeds}",
            "pooled": f"SD of differences {points(found.sd)} points, pooled over the pairs with 2+ seeds",
            "assumed": f"SD of differences assumed to be {points(found.sd)} points, since no pair has 2 seeds",
        }[found.sd_source]
        need = f"about {found.seeds} seeds" if found.seeds else f"{found.reason} seeds"
        return (
            f"{text}; {size} would need {need} to be detected "
            f"(paired t-test, α = {ALPHA}, power {POWER}, {sd_text}{note})."
        )
    interval = f"[{points(pair['ci_low'])}, {points(pair['ci_high'])}]"
    adjusted = f"Holm-adjusted p = {pair['p_value_holm']:.2g} over {tested} pair{'s' if tested != 1 else ''}"
    if pair["significant"]:
        winner, loser = (a, b) if difference > 0 else (b, a)
        low, high = (pair["ci_low"], pair["ci_high"]) if difference > 0 else (-pair["ci_high"], -pair["ci_low"])
        return (
            f"{winner} beats {loser} by {points(abs(difference))} points [{points(low)}, {points(high)}] "
            f"at {seeds} ({adjusted}{note})."
        )
    excludes_zero = pair["ci_low"] > 0 or pair["ci_high"] < 0
    caveat = "; the interval excludes 0 but the corrected test does not reject" if excludes_zero else ""
    return (
        f"no detectable difference between {a} and {b} at {seeds}: {a} − {b} = {points(difference)} points "
        f"{interval} ({adjusted}{caveat}{note})."
    )
