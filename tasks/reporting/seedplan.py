"""The seed plan of an internal pilot: from the pilot seeds' results, how many seeds each optimizer gets.

Each pair's SD of per-seed differences (and, with per-example predictions, its test-sample part) is
estimated from the pilot; the pair needs the smallest n whose simultaneous interval (Bonferroni over
all K pairs) has half-width ≤ margin/2 with probability POWER, which guarantees a decisive verdict,
beats or equivalent (tasks.reporting.power). It uses the variance only, never the observed difference,
so deciding how many seeds to run does not bias the verdicts read from all of them afterwards (Wittes
& Brittain 1990's internal pilot; the suite's simulation checks the level). Pairs are compared on the
seeds both optimizers ran, so each optimizer gets the most any of its pairs needs, at least the pilot
and at most `max_seeds`. A pair no seed count is sure to settle (its test-sample part alone is too wide
for the margin) can still be decided as "beats", and seeds still narrow it until their part of the
variance is no larger than the test sample's (power.seeds_to_balance): it gets that many, at most the cap.
One that would need more than `max_seeds` pulls its optimizers to the cap.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from itertools import combinations
from typing import Any

from tasks.core.errors import ReportError
from tasks.reporting import measures, power
from tasks.reporting.statistics import (
    Correctness,
    Paired,
    chosen_accuracies,
    correctness_matrices,
    paired,
    seeds_run,
)
from tasks.reporting.verdicts import SD_TEXT

SIZED, TEST_SET, CAPPED = "sized", "test set", "capped"


def pilot_rows(rows: Iterable[Mapping[str, Any]], pilot: int) -> list[Mapping[str, Any]]:
    """The rows of the `pilot` smallest seeds among the chosen rows: the pilot of an adaptive run."""
    rows = list(rows)
    seeds = sorted({int(row["seed"]) for row in rows if row.get("chosen")})[:pilot]
    return [row for row in rows if int(row["seed"]) in seeds]


def seed_plan(
    rows: Iterable[Mapping[str, Any]],
    *,
    margin: float,
    max_seeds: int,
    correctness: Correctness | None = None,
    alpha: float = power.ALPHA,
    target_power: float = power.POWER,
) -> dict[str, Any]:
    """Seeds per optimizer and per pair, with the reason for each, from the pilot's summary rows."""
    if not margin > 0 or max_seeds < power.MIN_SEEDS:
        raise ReportError(
            f"seed plan: expected margin > 0 and max_seeds ≥ {power.MIN_SEEDS}, found {margin}, {max_seeds}"
        )
    rows = list(rows)
    accuracies, _ = chosen_accuracies(rows)
    matrices = correctness_matrices(accuracies, correctness) if correctness is not None else None
    ran = seeds_run(rows)
    pairs = [paired(accuracies, matrices, ran, a, b) for a, b in combinations(accuracies, 2)]
    pooled = power.pooled_sd([pair.differences for pair in pairs])
    settings = {"margin": margin, "comparisons": len(pairs), "alpha": alpha, "target_power": target_power}
    needs = [pair_need(pair, pooled, max_seeds, **settings) for pair in pairs]
    seeds = {name: min(max_seeds, len(ran[name])) for name in accuracies}
    for need in needs:
        for name in (need["a"], need["b"]):
            seeds[name] = max(seeds[name], need["seeds_requested"])
    for need in needs:
        need["seeds"] = min(seeds[need["a"]], seeds[need["b"]])
        need["reason"] = reason(need, margin, max_seeds, target_power)
    return {
        "margin": margin,
        "max_seeds": max_seeds,
        "power": target_power,
        "alpha": alpha,
        "comparisons": len(pairs),
        "optimizers": {name: {"pilot_seeds": len(ran[name]), "seeds": seeds[name]} for name in accuracies},
        "pairs": needs,
    }


def pair_need(
    pair: Paired,
    pooled: float | None,
    max_seeds: int,
    *,
    margin: float,
    comparisons: int,
    alpha: float,
    target_power: float,
) -> dict[str, Any]:
    """One pair's need from its pilot: the seeds that settle it, or why no count up to the cap does."""
    sd, source = power.chosen_sd(pair.differences, pooled)
    test_variance = measures.test_part(pair.matrix).test_variance
    size = {"alpha": alpha, "power": target_power}
    sizing = power.seeds_to_settle(sd, source, test_variance, margin, comparisons, limit=max_seeds, **size)
    n = pair.differences.size
    balanced = None
    if sizing.seeds is not None:
        status, needed, capped = SIZED, max(n, sizing.seeds), max(n, sizing.seeds)
    elif sizing.reason == power.TEST_SET:
        balanced = max(n, power.seeds_to_balance(sd, test_variance))
        status, needed, capped = TEST_SET, None, min(max_seeds, balanced)
    else:
        beyond = power.seeds_to_settle(sd, source, test_variance, margin, comparisons, **size)
        status, needed, capped = CAPPED, beyond.seeds, max_seeds
    return {
        "a": pair.a,
        "b": pair.b,
        "pilot_seeds": n,
        "sd_difference": sd,
        "sd_source": source,
        "se_test": sizing.test_sd if pair.matrix is not None else None,
        "status": status,
        "seeds_needed": needed,
        "seeds_requested": capped,
        "seeds_to_balance": balanced,
    }


def reason(need: Mapping[str, Any], margin: float, max_seeds: int, target_power: float) -> str:
    """Why a pair gets the seeds it gets, in one clause."""
    sd = SD_TEXT[need["sd_source"]].format(
        sd=power.points(need["sd_difference"]), seeds=f"the pilot's {need['pilot_seeds']} seeds"
    )
    if need["status"] == TEST_SET:
        text = (
            "no seed count is sure to settle it: the test sample's own standard error, "
            f"{power.points(need['se_test'])} points, is too wide for the ±{power.points(margin)}-point margin; "
        )
        if need["seeds_to_balance"] > max_seeds:
            text += f"even max {max_seeds} seeds leave the seed part of its variance the larger; it gets the cap"
        else:
            text += (
                f"{need['seeds_requested']} seeds make the seed part of its variance no larger than the test sample's"
            )
        text += f" ({sd})"
        if need["seeds"] > need["seeds_requested"]:
            text += f"; it gets {need['seeds']}, which another pair of the same optimizers needs"
        return text
    if need["status"] == CAPPED:
        beyond = f"about {need['seeds_needed']}" if need["seeds_needed"] else f"more than {power.MAX_SEEDS}"
        return (
            f"not sure to settle at the cap: a verdict with probability {target_power} would need {beyond} seeds, "
            f"more than max {max_seeds}; it gets the cap ({sd})"
        )
    text = f"{need['seeds_needed']} seeds settle it with probability {target_power} ({sd})"
    if need["seeds"] > need["seeds_needed"]:
        text += f"; it gets {need['seeds']}, which another pair of the same optimizers needs"
    return text
