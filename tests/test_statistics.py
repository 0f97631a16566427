"""The report's statistics on known answers: tiny synthetic summary rows, no runs, no figures.

Every interval is recomputed here by hand from scipy.stats.t.ppf (or scipy's own t-tests), never from
tasks.reporting.statistics itself.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import scipy.stats

from tasks.core.errors import ReportError
from tasks.reporting import power, statistics, targets


def rows_for(accuracies: dict[str, list[float | None]], chosen: bool = True) -> list[dict]:
    """Summary rows: one per (entry, seed); None is a diverged run."""
    return [
        {
            "name": name,
            "seed": seed,
            "status": "diverged" if value is None else "completed",
            "test_accuracy": value,
            "chosen": chosen,
        }
        for name, values in accuracies.items()
        for seed, value in enumerate(values)
    ]


def t_interval(values, level: float) -> tuple[float, float]:
    """mean ± t(1 − (1 − level)/2, n − 1) s/√n, by hand."""
    values = np.asarray(values, dtype=np.float64)
    half = scipy.stats.t.ppf(1 - (1 - level) / 2, values.size - 1) * values.std(ddof=1) / math.sqrt(values.size)
    return values.mean() - half, values.mean() + half


NOISE = np.random.default_rng(7).normal(0, 0.002, 10)
BASE = np.round(0.87 + NOISE, 4)
WINNER = BASE + 0.006 + np.round(np.random.default_rng(8).normal(0, 0.001, 10), 4)
CLOSE = BASE + np.round(np.random.default_rng(9).normal(0.0002, 0.0004, 10), 4)


def test_a_clear_winner_beats_and_its_sentence_prints_the_simultaneous_interval_it_was_read_from():
    result = statistics.compute(rows_for({"msvag": list(BASE), "adam": list(WINNER), "sgd": list(CLOSE)}))
    pair = result["pairs"][0]
    differences = BASE - WINNER
    assert (pair["a"], pair["b"], pair["n_seeds"], pair["seeds_run"]) == ("msvag", "adam", 10, 10)
    assert pair["mean_difference"] == pytest.approx(differences.mean(), abs=1e-15)
    assert (pair["ci_low"], pair["ci_high"]) == pytest.approx(t_interval(differences, 0.95), rel=1e-10)
    simultaneous = t_interval(differences, 1 - 0.05 / 3)  # Bonferroni over the 3 pairs
    assert (pair["simultaneous_ci_low"], pair["simultaneous_ci_high"]) == pytest.approx(simultaneous, rel=1e-10)
    assert pair["p_value"] == pytest.approx(scipy.stats.ttest_rel(BASE, WINNER).pvalue, rel=1e-10)
    assert pair["p_value_bonferroni"] == pytest.approx(3 * pair["p_value"]) and pair["significant"] is True
    assert pair["verdict"]["kind"] == "beats" and (pair["verdict"]["winner"], pair["verdict"]["loser"]) == (
        "adam",
        "msvag",
    )
    assert (pair["verdict"]["low"], pair["verdict"]["high"]) == (
        pair["simultaneous_ci_low"],
        pair["simultaneous_ci_high"],
    )
    assert pair["p_improvement"] == 0.0 and pair["n_ties"] == 0  # msvag never beats adam
    assert pair["p_improvement_ci_high"] == pytest.approx(1 - 0.025 ** (1 / 10))  # Clopper–Pearson, 0 of 10
    low, high = -100 * simultaneous[1], -100 * simultaneous[0]
    assert pair["sentence"] == (
        f"adam beats msvag by {-100 * differences.mean():.2f} points [{low:.2f}, {high:.2f}] at 10 seeds "
        "(98.3% simultaneous interval over 3 pairs; seeds (initialization, data order) only, test images held fixed)."
    )
    optimizer = result["optimizers"]["msvag"]
    assert (optimizer["ci_low"], optimizer["ci_high"]) == pytest.approx(t_interval(BASE, 0.95), rel=1e-12)
    assert optimizer["mean"] == pytest.approx(BASE.mean(), abs=1e-15) and optimizer["n_seeds"] == 10
    assert optimizer["se_test"] is None and optimizer["sd_seeds"] == pytest.approx(BASE.std(ddof=1))
    assert result["equivalence_margin"] == result["method"]["equivalence_margin"] == statistics.EQUIVALENCE_MARGIN


def test_a_pair_inside_the_margin_is_equivalent_and_says_within_what():
    result = statistics.compute(rows_for({"sgd": list(CLOSE), "msvag": list(BASE)}), margin=0.002)
    (pair,) = result["pairs"]
    low, high = t_interval(CLOSE - BASE, 0.95)  # one pair: the simultaneous interval is the 95% one
    assert -0.002 < low and high < 0.002 and pair["verdict"]["kind"] == "equivalent"
    assert pair["significant"] is False
    assert pair["sentence"].startswith(
        f"sgd and msvag are equivalent within ±0.20 points: sgd − msvag = {100 * (CLOSE - BASE).mean():.2f} points "
        f"[{100 * low:.2f}, {100 * high:.2f}] at 10 seeds (95% simultaneous interval over 1 pair;"
    )
    # A narrower margin leaves the same data undecided, and says how many seeds would settle it.
    narrow = statistics.compute(rows_for({"sgd": list(CLOSE), "msvag": list(BASE)}), margin=0.0002)["pairs"][0]
    assert narrow["verdict"]["kind"] == "undecided" and narrow["seeds_needed"] > 10
    assert (
        f"about {narrow['seeds_needed'] - 10} more seeds ({narrow['seeds_needed']} in all) would settle it"
        in (narrow["sentence"])
    )


def test_identical_optimizers_are_equivalent_and_ties_are_no_wins():
    result = statistics.compute(rows_for({"adam": list(BASE), "momentum": list(BASE)}))
    (pair,) = result["pairs"]
    assert (pair["mean_difference"], pair["ci_low"], pair["ci_high"]) == (0.0, 0.0, 0.0)
    assert (pair["p_value"], pair["significant"], pair["verdict"]["kind"]) == (1.0, False, "equivalent")
    assert (pair["p_improvement"], pair["n_ties"]) == (0.0, 10)
    assert (pair["p_improvement_ci_low"], pair["p_improvement_ci_high"]) == pytest.approx((0.0, 0.3085), abs=1e-4)


def seeds_to_settle_by_hand(sd: float, n_max: int, comparisons: int, margin: float = 0.002) -> int:
    """Smallest n with P(t(1 − α/2K, n − 1) S/√n ≤ margin/2) ≥ 0.8, S² ~ σ² χ²(n−1)/(n−1)."""
    for n in range(3, n_max):
        t = scipy.stats.t.ppf(1 - 0.05 / (2 * comparisons), n - 1)
        if scipy.stats.chi2.cdf((n - 1) * n * (margin / (2 * t)) ** 2 / sd**2, n - 1) >= 0.8:
            return n
    raise AssertionError("not reached")


def test_fewer_than_three_seeds_give_no_interval_but_the_seeds_that_would_settle_the_pair():
    b = np.array([0.86, 0.87])
    a = b + [0.001, 0.003]
    result = statistics.compute(rows_for({"a": list(a), "b": list(b)}), margin=0.002)
    (pair,) = result["pairs"]
    keys = ("ci_low", "ci_high", "simultaneous_ci_low", "p_value", "p_value_bonferroni", "significant")
    assert [pair[key] for key in keys] == [None] * 6
    assert pair["p_improvement_ci_low"] is None and result["optimizers"]["a"]["ci_low"] is None
    sd = (a - b).std(ddof=1)
    assert pair["sd_difference"] == pytest.approx(sd)
    assert pair["seeds_needed"] == result["seeds_needed"] == seeds_to_settle_by_hand(sd, 200, 1)
    assert pair["verdict"] == {
        "kind": "undecided",
        "winner": None,
        "loser": None,
        "difference": pytest.approx(-0.002 * -1),
        "low": None,
        "high": None,
        "confidence": 0.95,
        "margin": 0.002,
        "seeds_to_settle": pair["seeds_needed"],
        "more_seeds": pair["seeds_needed"] - 2,
        "why": "too few seeds",
    }
    assert pair["sentence"].startswith("undecided between a and b: a − b = 0.20 points from only 2 seeds (3 needed")
    assert "from the variance only, not from the observed difference" in pair["sentence"]
    assert "SD of differences 0.14 points from these 2 seeds" in pair["sentence"]

    # One seed: the SD cannot be estimated, so the assumption is used and said.
    single = statistics.compute(rows_for({"a": [0.88], "b": [0.87]}), margin=0.002)["pairs"][0]
    assert single["seeds_needed"] == seeds_to_settle_by_hand(power.ASSUMED_SD, 2000, 1)
    assert "assumed to be 0.50 points" in single["sentence"]


def test_bonferroni_over_the_pairs_and_the_verdict_agree_on_every_pair():
    shifts = {"a": 0.0, "b": -0.008, "c": -0.001, "d": -0.0012}
    noise = np.random.default_rng(3).normal(0, 0.002, (4, 8))
    result = statistics.compute(
        rows_for({name: list(np.round(0.87 + shift + noise[i], 4)) for i, (name, shift) in enumerate(shifts.items())}),
        margin=0.002,
    )
    pairs = result["pairs"]
    assert result["method"]["comparisons"] == len(pairs) == 6
    for pair in pairs:
        assert pair["p_value_bonferroni"] == pytest.approx(min(1.0, 6 * pair["p_value"]))
        excludes_zero = pair["simultaneous_ci_low"] > 0 or pair["simultaneous_ci_high"] < 0
        assert pair["significant"] == excludes_zero == (pair["p_value_bonferroni"] < 0.05)
        assert pair["significant"] == (pair["verdict"]["kind"] == "beats")
        assert "99.2% simultaneous interval over 6 pairs" in pair["sentence"]
    assert {pair["verdict"]["kind"] for pair in pairs} >= {"beats", "undecided"}


def test_an_interval_depends_on_its_own_data_only_and_the_simultaneous_level_on_the_number_of_pairs():
    other = np.round(0.872 + np.random.default_rng(9).normal(0, 0.002, 10), 4)
    two = rows_for({"adam": list(other), "sgd": list(BASE)})
    first = statistics.compute(two)
    assert statistics.compute(two) == first  # bit for bit
    three = statistics.compute(two + rows_for({"svag": list(BASE[::-1])}))
    for key in ("ci_low", "ci_high"):
        assert three["optimizers"]["adam"][key] == first["optimizers"]["adam"][key]
    for key in ("ci_low", "ci_high", "p_improvement_ci_low", "p_improvement_ci_high", "p_value"):
        assert three["pairs"][0][key] == first["pairs"][0][key]
    assert three["pairs"][0]["simultaneous_ci_low"] < first["pairs"][0]["simultaneous_ci_low"]  # 3 pairs, not 1


def test_diverged_and_missing_accuracies_are_left_out_never_zero():
    rows = rows_for({"adam": [0.88, 0.89, None, 0.87], "sgd": [0.86, None, 0.85, 0.86], "wild": [None, None]})
    rows.append({"name": "adam", "seed": 9, "status": "completed", "test_accuracy": float("nan"), "chosen": True})
    rows += rows_for({"adam": [0.1] * 4}, chosen=False)  # another grid point: never compared
    result = statistics.compute(rows)
    adam, wild = result["optimizers"]["adam"], result["optimizers"]["wild"]
    assert (adam["n_seeds"], adam["n_excluded"]) == (3, 2) and adam["mean"] == pytest.approx(0.88)
    assert wild == {
        "mean": None,
        "ci_low": None,
        "ci_high": None,
        "n_seeds": 0,
        "n_excluded": 2,
        "sd_seeds": None,
        "se_seeds": None,
        "se_test": None,
        "df": None,
    }
    pairs = {(pair["a"], pair["b"]): pair for pair in result["pairs"]}
    assert (pairs["adam", "sgd"]["n_seeds"], pairs["adam", "sgd"]["seeds_run"]) == (2, 4)  # seeds 0 and 3 only
    assert (
        "; adam's 2 run(s) without a test accuracy left out; sgd's 1 run(s) without a test accuracy left out)."
        in pairs["adam", "sgd"]["sentence"]
    )
    assert pairs["adam", "wild"]["sentence"] == (
        "undecided between adam and wild: they share no seed on which both have a test accuracy, nothing to "
        "compare (adam's 2 run(s) without a test accuracy left out; wild's 2 run(s) without a test accuracy left out)."
    )
    assert pairs["adam", "wild"]["verdict"]["why"] == "no shared seed" and pairs["adam", "wild"]["seeds_needed"] is None
    json.dumps(result, allow_nan=False)


def test_one_hundred_runs_give_every_pair_one_verdict_with_stable_keys():
    accuracies = {f"opt{k}": list(np.round(0.85 + 0.001 * k + NOISE * (k % 3), 4)) for k in range(10)}
    result = statistics.compute(rows_for(accuracies))
    assert len(result["optimizers"]) == 10 and len(result["pairs"]) == 45
    assert all(tuple(pair) == statistics.PAIR_KEYS for pair in result["pairs"])
    assert all(pair["ci_low"] <= pair["mean_difference"] <= pair["ci_high"] for pair in result["pairs"])
    assert all(pair["verdict"]["kind"] in ("beats", "equivalent", "undecided") for pair in result["pairs"])
    undecided = [pair for pair in result["pairs"] if pair["verdict"]["kind"] == "undecided"]
    assert all(pair["seeds_needed"] and "would settle it" in pair["sentence"] for pair in undecided)
    assert json.loads(json.dumps(result, allow_nan=False)) == result


def correctness_for(accuracies: dict[str, list[float]], examples: int = 2000, seed: int = 0) -> dict:
    """0/1 vectors per (entry, seed) with exactly the given accuracy; images hard for all share errors."""
    rng = np.random.default_rng(seed)
    hardness = rng.permutation(examples)
    vectors = {}
    for name, values in accuracies.items():
        for run, accuracy in enumerate(values):
            wrong = round((1 - accuracy) * examples)
            noisy = hardness + rng.normal(0, examples / 8, examples)  # mostly the same hard images
            vector = np.ones(examples, dtype=bool)
            vector[np.argsort(-noisy)[:wrong]] = False
            vectors[name, run] = vector
    return vectors


def test_per_example_correctness_adds_the_test_sample_to_every_interval_and_the_variance_table():
    accuracies = {"adam": [0.8805, 0.8790, 0.8830, 0.8815], "sgd": [0.8750, 0.8760, 0.8790, 0.8745]}
    rows = rows_for(accuracies)
    vectors = correctness_for(accuracies)
    seeds_only = statistics.compute(rows)
    both = statistics.compute(rows, correctness=vectors, split_varies=True)
    adam, adam_seeds = both["optimizers"]["adam"], seeds_only["optimizers"]["adam"]
    assert adam["mean"] == adam_seeds["mean"] and adam["se_seeds"] == pytest.approx(adam_seeds["se_seeds"])
    # The test part of one optimizer's mean is about the binomial SE of 2,000 images, and it widens the interval.
    assert 0.5 * math.sqrt(0.12 * 0.88 / 2000) < adam["se_test"] < 1.2 * math.sqrt(0.12 * 0.88 / 2000)
    assert adam["ci_high"] - adam["ci_low"] > adam_seeds["ci_high"] - adam_seeds["ci_low"]
    pair = both["pairs"][0]
    assert (
        pair["se_test"] > 0
        and pair["ci_high"] - pair["ci_low"] > seeds_only["pairs"][0]["ci_high"] - (seeds_only["pairs"][0]["ci_low"])
    )
    assert "seeds (initialization, data order, validation split) and test images" in pair["sentence"]
    table = {row["name"]: row for row in both["variance"]}
    assert table["adam"]["se_total"] == pytest.approx(math.hypot(adam["se_seeds"], adam["se_test"]))
    assert 0 < table["adam"]["test_share"] < 1 and both["method"]["split_varies"] is True
    assert seeds_only["variance"][0]["se_test"] is None and seeds_only["variance"][0]["test_share"] is None


def test_bad_per_example_correctness_is_refused_naming_the_run():
    accuracies = {"adam": [0.88, 0.87, 0.89], "sgd": [0.86, 0.85, 0.87]}
    rows = rows_for(accuracies)
    good = correctness_for(accuracies, examples=100)
    missing = {key: value for key, value in good.items() if key != ("sgd", 1)}
    with pytest.raises(ReportError, match=r"correctness of 'sgd' seed 1: missing"):
        statistics.compute(rows, correctness=missing)
    with pytest.raises(ReportError, match=r"'adam' seed 2: expected 100 values, found shape \(99,\)"):
        statistics.compute(rows, correctness={**good, ("adam", 2): good["adam", 2][:99]})
    with pytest.raises(ReportError, match="expected only 0/1"):
        statistics.compute(rows, correctness={**good, ("adam", 0): good["adam", 0] * 2})
    with pytest.raises(ReportError, match=r"'sgd' seed 0: gives accuracy 0.870000, but summary.parquet says 0.860000"):
        statistics.compute(rows, correctness={**good, ("sgd", 0): good["sgd", 2]})


def test_time_to_target_is_the_first_epoch_reaching_it_and_the_seconds_spent():
    metrics = {
        "epoch": np.array([1, 2, 3]),
        "val_accuracy": np.array([0.8, 0.86, 0.9]),
        "wall_seconds": np.array([10.0, 11.0, 12.5]),
    }
    assert targets.time_to_targets(metrics, (0.85, 0.9, 0.95)) == [(2, 21.0), (3, 33.5), (None, None)]
    assert targets.time_to_targets(None, (0.85,)) == [(None, None)]
    assert targets.columns(0.885) == ("epochs_to_val_88p5", "seconds_to_val_88p5")

    epochs, seconds = targets.columns(0.85)
    times = {"a": [(2, 20.0), (3, 30.0), (None, None)], "b": [(1, 10.0), (None, None), (None, None)]}
    rows = [
        {"name": name, "seed": seed, "chosen": True, epochs: epoch, seconds: second}
        for name, values in times.items()
        for seed, (epoch, second) in enumerate(values)
    ]
    summary = targets.summarize(rows, (0.85,))
    a, b = summary["optimizers"]["a"][0], summary["optimizers"]["b"][0]
    assert (a["reached"], a["median_epochs"], a["median_seconds"]) == (2, 3.0, 30.0)  # not reached counts as ∞
    assert (b["reached"], b["median_epochs"]) == (1, None)  # fewer than half reached: no median
    # Seed 0: b is fastest (10 s); seed 1: only a reached; seed 2: no one did.
    assert summary["profiles"][0]["ratios"] == {"a": [2.0, 1.0, None], "b": [1.0, None, None]}
    curve = targets.profile_curve([2.0, 1.0, None], np.array([1.0, 1.5, 2.0]))
    assert curve.tolist() == pytest.approx([1 / 3, 1 / 3, 2 / 3])
