"""One verdict per pair of optimizers, read off one interval, and the plain sentence that states it.

Every verdict is read off the pair's *simultaneous* interval of the mean paired difference A − B: a
Student-t interval at Bonferroni's level 1 − α/K over the K pairs that have one
(tasks.reporting.intervals). In this order:
- it excludes 0: "A beats B by x points [lo, hi]" (or B beats A);
- it lies inside (−m, m), m the equivalence margin: "A and B are equivalent within ±m" (a confidence
  interval inside the margin, which is TOST at a level at least as strict);
- otherwise "undecided", with the seeds that would settle it (tasks.reporting.power).
All K simultaneous intervals cover their true differences together with probability ≥ 1 − α, and when
they do, no verdict is wrong: no "beats" for a zero difference or the wrong way round, no "equivalent"
for a difference of m or more. So the family-wise error of all verdicts together is at most α. The
printed interval is the one the verdict was read from, and the sentence says so; the per-pair 95%
interval (tables, coverage) is labelled separately. Bonferroni, not Holm: Holm's step-down has no
simultaneous intervals to print beside its decisions, and a sentence must not give two answers.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tasks.reporting.power import BEYOND, MIN_SEEDS, POWER, TEST_SET, Sizing, points

BEATS, EQUIVALENT, UNDECIDED = "beats", "equivalent", "undecided"
SD_TEXT = {
    "observed": "SD of differences {sd} points from {seeds}",
    "pooled": "SD of differences {sd} points, pooled over the pairs with 2+ seeds",
    "assumed": "SD of differences assumed to be {sd} points, since no pair has 2 seeds",
}


def decide(low: float, high: float, margin: float) -> str:
    """The verdict an interval of A − B supports: BEATS, EQUIVALENT or UNDECIDED (module docstring)."""
    if low > 0 or high < 0:
        return BEATS
    if -margin < low and high < margin:
        return EQUIVALENT
    return UNDECIDED


@dataclass(frozen=True)
class Verdict:
    """report.json's `verdict` of one pair: the kind and the numbers it was read from (A − B throughout)."""

    kind: str
    winner: str | None
    loser: str | None
    difference: float | None
    low: float | None  # the simultaneous interval of A − B
    high: float | None
    confidence: float  # its level, 1 − α/K
    margin: float
    seeds_to_settle: int | None  # undecided only: total seeds that settle it with probability POWER
    more_seeds: int | None
    why: str  # undecided only: "too few seeds", "no shared seed", "interval too wide", TEST_SET, BEYOND

    def to_json(self) -> dict[str, Any]:
        return dict(vars(self))


def verdict(
    a: str,
    b: str,
    difference: float | None,
    interval: tuple[float, float] | None,
    n: int,
    confidence: float,
    margin: float,
    sizing: Sizing | None,
) -> Verdict:
    """The verdict of a pair from a − b and its simultaneous interval (None below MIN_SEEDS seeds)."""
    kind = decide(*interval, margin) if interval else UNDECIDED
    low, high = interval if interval else (None, None)
    if kind == BEATS:
        winner, loser = (a, b) if difference > 0 else (b, a)
        return Verdict(kind, winner, loser, difference, low, high, confidence, margin, None, None, "")
    if kind == EQUIVALENT:
        return Verdict(kind, None, None, difference, low, high, confidence, margin, None, None, "")
    why = "no shared seed" if n == 0 else "too few seeds" if interval is None else "interval too wide"
    seeds = sizing.seeds if sizing else None
    more = None if seeds is None else max(seeds - n, 1)
    return Verdict(
        kind,
        None,
        None,
        difference,
        low,
        high,
        confidence,
        margin,
        seeds,
        more,
        (sizing.reason or why) if sizing else why,
    )


def percent(confidence: float) -> str:
    """A confidence level as a short percentage: 0.95 → '95%', 0.98333 → '98.3%'."""
    return f"{100 * confidence:.3g}%"


def sentence(
    found: Verdict,
    pair: Mapping[str, Any],
    sizing: Sizing | None,
    comparisons: int,
    sources: str,
    lost: Mapping[str, int],
) -> str:
    """What the data supports about one pair, in one sentence (see the module docstring)."""
    a, b, n = pair["a"], pair["b"], pair["n_seeds"]
    seeds = f"{n} seed{'s' if n != 1 else ''}"
    # Runs without a test accuracy (diverged) are named inside the closing parenthesis, never hidden.
    note = "".join(
        f"; {name}'s {lost[name]} run(s) without a test accuracy left out" for name in (a, b) if lost.get(name)
    )
    if n == 0:
        left_out = f" ({note[2:]})" if note else ""
        return (
            f"undecided between {a} and {b}: they share no seed on which both have a test accuracy, "
            f"nothing to compare{left_out}."
        )
    label = f"{percent(found.confidence)} simultaneous interval over {comparisons} pair{'s' * (comparisons != 1)}"
    over = f"{label}; {sources}"
    if found.kind == BEATS:
        sign = 1 if found.winner == a else -1
        low, high = sorted((sign * found.low, sign * found.high))
        inside = f", less than the ±{points(found.margin)}-point margin" if high < found.margin else ""
        return (
            f"{found.winner} beats {found.loser} by {points(sign * found.difference)} points "
            f"[{points(low)}, {points(high)}] at {seeds}{inside} ({over}{note})."
        )
    measured = f"{a} − {b} = {points(found.difference)} points"
    if found.kind == EQUIVALENT:
        return (
            f"{a} and {b} are equivalent within ±{points(found.margin)} points: {measured} "
            f"[{points(found.low)}, {points(found.high)}] at {seeds} ({over}{note})."
        )
    if found.low is None:
        measured += f" from only {seeds} ({MIN_SEEDS} needed for an interval)"
    else:
        measured += f" [{points(found.low)}, {points(found.high)}] at {seeds} ({over})"
    return f"undecided between {a} and {b}: {measured}; {settle_text(found, sizing, seeds)}{note})."


def settle_text(found: Verdict, sizing: Sizing, seeds: str) -> str:
    """How many seeds would settle an undecided pair, and on what basis; it ends inside a parenthesis."""
    half = points(found.margin / 2)
    sd = SD_TEXT[sizing.sd_source].format(sd=points(sizing.sd), seeds=f"these {seeds}")
    if found.why == TEST_SET:
        return (
            "no number of seeds is sure to settle it: the test sample's own standard error of "
            f"{points(sizing.test_sd)} points, which more seeds do not reduce, keeps the simultaneous interval "
            f"wider than ±{half} points "
            f"(half the margin); a larger test set or a wider margin would ({sd}"
        )
    test = f", test-sample standard error {points(sizing.test_sd)} points" if sizing.test_sd else ""
    basis = (
        f"sized at the margin from the variance only, not from the observed difference: with that many seeds the "
        f"simultaneous interval is at most ±{half} points with probability {POWER}, whatever the true difference; "
        f"{sd}{test}"
    )
    if found.why == BEYOND:
        return f"more than {sizing.limit} seeds would be needed to settle it ({basis}"
    return f"about {found.more_seeds} more seeds ({found.seeds_to_settle} in all) would settle it ({basis}"
