"""The internal pilot's seed plan (tasks.reporting.seedplan): sized from the variance only, capped, explained."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tasks.core.errors import ReportError
from tasks.reporting import seedplan
from tests.test_statistics import correctness_for, rows_for, seeds_to_settle_by_hand

RNG = np.random.default_rng(21)
SHARED = RNG.normal(0, 0.003, 3)
PILOT = {  # per-seed differences: adam − sgd SD ~0.2 points, adam − momentum and sgd − momentum ~0.1
    "adam": list(np.round(0.88 + SHARED + [0.0010, -0.0012, 0.0002], 4)),
    "sgd": list(np.round(0.876 + SHARED + [-0.0011, 0.0013, 0.0001], 4)),
    "momentum": list(np.round(0.879 + SHARED + [0.0003, 0.0001, -0.0003], 4)),
}


def sd_of(a: str, b: str) -> float:
    return float(np.std(np.array(PILOT[a]) - np.array(PILOT[b]), ddof=1))


def test_each_pair_gets_the_seeds_its_variance_needs_and_each_optimizer_the_most_of_its_pairs():
    plan = seedplan.seed_plan(rows_for(PILOT), margin=0.002, max_seeds=40)
    pairs = {(pair["a"], pair["b"]): pair for pair in plan["pairs"]}
    assert plan["comparisons"] == 3
    for (a, b), pair in pairs.items():
        assert pair["status"] == "sized" and pair["pilot_seeds"] == 3
        assert pair["sd_difference"] == pytest.approx(sd_of(a, b))
        assert pair["seeds_needed"] == seeds_to_settle_by_hand(sd_of(a, b), 200, comparisons=3)
    for name in PILOT:
        own = [pair["seeds_needed"] for pair in plan["pairs"] if name in (pair["a"], pair["b"])]
        assert plan["optimizers"][name] == {"pilot_seeds": 3, "seeds": max(own)}
    for (a, b), pair in pairs.items():
        assert pair["seeds"] == min(plan["optimizers"][a]["seeds"], plan["optimizers"][b]["seeds"])
        assert pair["reason"].startswith(f"{pair['seeds_needed']} seeds settle it with probability 0.8")
        if pair["seeds"] > pair["seeds_needed"]:
            assert f"it gets {pair['seeds']}, which another pair of the same optimizers needs" in pair["reason"]


def test_the_plan_never_looks_at_the_observed_difference():
    shifted = {
        name: list(np.round(np.array(values) + shift, 4))
        for (name, values), shift in zip(PILOT.items(), (0.01, 0, -0.02))
    }
    first = seedplan.seed_plan(rows_for(PILOT), margin=0.002, max_seeds=40)
    second = seedplan.seed_plan(rows_for(shifted), margin=0.002, max_seeds=40)
    assert [p["seeds"] for p in first["pairs"]] == [p["seeds"] for p in second["pairs"]]
    assert first["optimizers"] == second["optimizers"]


def test_a_pair_beyond_the_cap_pulls_its_optimizers_to_the_cap_and_says_how_many_it_would_need():
    plan = seedplan.seed_plan(rows_for(PILOT), margin=0.002, max_seeds=8)
    capped = [pair for pair in plan["pairs"] if pair["status"] == "capped"]
    assert capped and all(pair["seeds"] == 8 for pair in capped)
    for pair in capped:
        assert pair["seeds_needed"] == seeds_to_settle_by_hand(sd_of(pair["a"], pair["b"]), 2000, comparisons=3)
        assert f"would need about {pair['seeds_needed']} seeds, more than max 8; it gets the cap" in pair["reason"]
    assert all(entry["seeds"] <= 8 for entry in plan["optimizers"].values())


@pytest.mark.parametrize(
    ("examples", "max_seeds", "seeds"),
    [(200, 20, 3), (10_000, 20, 7), (10_000, 5, 5)],
    ids=["wide", "balanced", "capped"],
)
def test_a_pair_the_test_set_keeps_undecided_gets_seeds_until_they_are_the_smaller_noise(examples, max_seeds, seeds):
    accuracies = {"adam": [0.88, 0.885, 0.875], "sgd": [0.87, 0.885, 0.88]}
    vectors = {
        **correctness_for({"adam": accuracies["adam"]}, examples=examples, seed=1),
        **correctness_for({"sgd": accuracies["sgd"]}, examples=examples, seed=2),
    }
    plan = seedplan.seed_plan(rows_for(accuracies), margin=0.002, max_seeds=max_seeds, correctness=vectors)
    (pair,) = plan["pairs"]
    assert (pair["status"], pair["seeds_needed"]) == ("test set", None)
    # The known truth: the fewest n ≥ 3 with σ²/n ≤ τ², σ the SD of the pilot's differences, τ the test part.
    sd, se_test = sd_of_lists(accuracies["adam"], accuracies["sgd"]), pair["se_test"]
    assert pair["sd_difference"] == pytest.approx(sd) and se_test > 0.001
    balanced = max(3, math.ceil(sd**2 / se_test**2))
    assert pair["seeds_to_balance"] == balanced and pair["seeds"] == min(max_seeds, balanced) == seeds
    assert plan["optimizers"]["adam"]["seeds"] == plan["optimizers"]["sgd"]["seeds"] == seeds
    assert pair["reason"].startswith("no seed count is sure to settle it: the test sample's own standard error")
    if balanced > max_seeds:
        assert (
            f"even max {max_seeds} seeds leave the seed part of its variance the larger; it gets the cap"
            in pair["reason"]
        )
    else:
        assert f"{seeds} seeds make the seed part of its variance no larger than the test sample's" in pair["reason"]


def sd_of_lists(a: list[float], b: list[float]) -> float:
    return float(np.std(np.array(a) - np.array(b), ddof=1))


def test_the_pilot_is_the_first_seeds_and_bad_settings_are_refused():
    rows = rows_for({"adam": [0.88] * 6, "sgd": [0.87] * 6})
    assert sorted({row["seed"] for row in seedplan.pilot_rows(rows, 3)}) == [0, 1, 2]
    with pytest.raises(ReportError, match="expected margin > 0 and max_seeds ≥ 3, found 0.0, 20"):
        seedplan.seed_plan(rows, margin=0.0, max_seeds=20)
