"""Verdicts (tasks.reporting.verdicts) and the seeds that settle a pair (tasks.reporting.power)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.stats
from hypothesis import given
from hypothesis import strategies as st

from tasks.reporting import power, statistics, verdicts
from tasks.reporting.verdicts import BEATS, EQUIVALENT, UNDECIDED, decide
from tests.test_statistics import correctness_for, rows_for

MARGIN = 0.002


@pytest.mark.parametrize(
    ("low", "high", "kind"),
    [
        (0.001, 0.003, BEATS),
        (-0.003, -0.0001, BEATS),
        (0.0001, 0.0015, BEATS),  # beats, by less than the margin: still one answer
        (-0.001, 0.0015, EQUIVALENT),
        (0.0, 0.001, EQUIVALENT),  # touching 0 is not excluding it
        (-0.001, 0.0025, UNDECIDED),
        (-0.002, 0.001, UNDECIDED),  # a difference of exactly the margin is not ruled out
        (-0.01, 0.01, UNDECIDED),
    ],
)
def test_each_interval_gets_exactly_one_verdict(low, high, kind):
    assert decide(low, high, MARGIN) == kind


@given(center=st.floats(-0.05, 0.05), fraction=st.floats(0, 1))
def test_a_half_width_of_at_most_half_the_margin_always_settles_the_pair(center, fraction):
    half = fraction * MARGIN / 2
    assert decide(center - half, center + half, MARGIN) != UNDECIDED


def half_widths(n: int, sd: float, test_variance: float, comparisons: int, draws: int, rng) -> np.ndarray:
    """Monte Carlo half-widths of the simultaneous interval with n seeds, each with its own realised S²."""
    s2 = sd**2 * rng.chisquare(n - 1, draws) / (n - 1)
    df = (n - 1) * (1 + test_variance * n / s2)  # √((n−1)·Satterthwaite), written out
    return scipy.stats.t.ppf(1 - 0.05 / (2 * comparisons), df) * np.sqrt(s2 / n + test_variance)


@pytest.mark.parametrize(("sd", "test_sd", "comparisons"), [(0.003, 0.0, 1), (0.002, 0.0, 10), (0.0025, 0.0003, 3)])
def test_the_seeds_to_settle_keep_their_promise_in_a_monte_carlo_of_the_interval(sd, test_sd, comparisons):
    sizing = power.seeds_to_settle(sd, "observed", test_sd**2, MARGIN, comparisons)
    n = sizing.seeds
    assert n is not None and sizing.reason == ""
    rng = np.random.default_rng(11)
    settled = np.mean(half_widths(n, sd, test_sd**2, comparisons, 40_000, rng) <= MARGIN / 2)
    fewer = np.mean(half_widths(n - 1, sd, test_sd**2, comparisons, 40_000, rng) <= MARGIN / 2)
    assert settled >= 0.8 - 0.006 and fewer < 0.8 + 0.006, (n, settled, fewer)


def test_no_seed_count_settles_a_pair_whose_test_sample_alone_is_too_wide():
    z = scipy.stats.norm.ppf(1 - 0.05 / 6)
    wide = power.seeds_to_settle(0.001, "observed", (MARGIN / 2 / z * 1.01) ** 2, MARGIN, 3)
    assert (wide.seeds, wide.reason) == (None, power.TEST_SET)
    assert power.seeds_to_settle(0.001, "observed", (MARGIN / 2 / z * 0.9) ** 2, MARGIN, 3).seeds is not None
    beyond = power.seeds_to_settle(0.05, "observed", 0.0, MARGIN, 3, limit=20)
    assert (beyond.seeds, beyond.reason, beyond.limit) == (None, power.BEYOND, 20)


def test_an_undecided_pair_says_why_when_the_test_set_is_too_small_for_the_margin():
    accuracies = {"adam": [0.88, 0.885, 0.875, 0.88], "sgd": [0.87, 0.885, 0.88, 0.885]}
    # Each optimizer fails its own hard images (independent hardness), on a test set of 200 images.
    vectors = {
        **correctness_for({"adam": accuracies["adam"]}, examples=200, seed=1),
        **correctness_for({"sgd": accuracies["sgd"]}, examples=200, seed=2),
    }
    result = statistics.compute(rows_for(accuracies), correctness=vectors)
    (pair,) = result["pairs"]
    assert pair["verdict"]["kind"] == UNDECIDED and pair["verdict"]["why"] == power.TEST_SET
    assert pair["seeds_needed"] is None and "no number of seeds is sure to settle it" in pair["sentence"]
    assert "a larger test set or a wider margin would" in pair["sentence"]


def test_no_sentence_gives_two_answers():
    rng = np.random.default_rng(12)
    for trial in range(40):
        n = (3, 4, 6, 10)[trial % 4]
        shared = rng.normal(0, 0.003, n)
        accuracies = {
            name: list(np.round(0.88 + shift + shared + rng.normal(0, 0.0015, n), 4))
            for name, shift in (("a", 0.0), ("b", 0.004 * (trial % 3)), ("c", 0.0005))
        }
        for pair in statistics.compute(rows_for(accuracies))["pairs"]:
            text, kind = pair["sentence"], pair["verdict"]["kind"]
            said = [
                word
                for word, phrase in ((BEATS, " beats "), (EQUIVALENT, " are equivalent "), (UNDECIDED, "undecided "))
                if phrase in text
            ]
            assert said == [kind], text
            if kind != UNDECIDED:
                shown = sorted(abs(100 * pair[key]) for key in ("simultaneous_ci_low", "simultaneous_ci_high"))
                assert all(f"{value:.2f}" in text for value in shown), text
            assert ("would settle it" in text) == (kind == UNDECIDED), text


def test_percent_formats_the_simultaneous_level():
    assert [verdicts.percent(level) for level in (0.95, 1 - 0.05 / 3, 1 - 0.05 / 45)] == ["95%", "98.3%", "99.9%"]
    assert math.isclose(float(verdicts.percent(0.995)[:-1]), 99.5)
