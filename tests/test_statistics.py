"""The report's statistics on known answers: tiny synthetic summary rows, no runs, no figures."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import scipy.stats

from tasks.reporting import anchors, power, statistics, targets


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


NOISE = np.random.default_rng(7).normal(0, 0.002, 10)
BASE = np.round(0.87 + NOISE, 4)


def test_a_clear_winner_is_significant_and_its_sentence_says_so():
    winner = BASE + 0.006 + np.round(np.random.default_rng(8).normal(0, 0.001, 10), 4)
    result = statistics.compute(rows_for({"msvag": list(BASE), "adam": list(winner)}))
    (pair,) = result["pairs"]
    differences = BASE - winner
    assert (pair["a"], pair["b"], pair["n_seeds"]) == ("msvag", "adam", 10)
    assert pair["mean_difference"] == pytest.approx(differences.mean(), abs=1e-15)
    assert pair["p_value"] == pytest.approx(scipy.stats.ttest_rel(BASE, winner).pvalue, rel=1e-12)
    assert pair["p_value_holm"] == pair["p_value"] < 0.05 and pair["significant"] is True
    assert pair["ci_high"] < 0 and pair["ci_low"] < pair["mean_difference"] < pair["ci_high"]
    assert pair["p_improvement"] == 0.0  # msvag never beats adam
    low, high = -100 * pair["ci_high"], -100 * pair["ci_low"]
    assert pair["sentence"].startswith(
        f"adam beats msvag by {-100 * differences.mean():.2f} points [{low:.2f}, {high:.2f}] at 10 seeds"
    )
    # The per-optimizer interval is scipy's percentile bootstrap with the report's seed, nothing else.
    reference = scipy.stats.bootstrap(
        (BASE,), np.mean, n_resamples=10_000, method="percentile", rng=np.random.default_rng(statistics.BOOTSTRAP_SEED)
    ).confidence_interval
    optimizer = result["optimizers"]["msvag"]
    assert (optimizer["ci_low"], optimizer["ci_high"]) == (reference.low, reference.high)
    assert optimizer["mean"] == pytest.approx(BASE.mean(), abs=1e-15) and optimizer["n_seeds"] == 10


def test_identical_optimizers_show_no_detectable_difference():
    result = statistics.compute(rows_for({"adam": list(BASE), "momentum": list(BASE)}))
    (pair,) = result["pairs"]
    assert (pair["mean_difference"], pair["ci_low"], pair["ci_high"]) == (0.0, 0.0, 0.0)
    assert (pair["p_value"], pair["significant"], pair["p_improvement"]) == (1.0, False, 0.5)  # ties count ½
    assert pair["sentence"].startswith("no detectable difference between adam and momentum at 10 seeds")


def test_fewer_than_three_seeds_give_no_interval_but_the_seeds_a_difference_needs():
    # Two seeds whose differences have mean m and SD 2m: effect size 0.5, which needs 34 pairs
    # (the textbook figure for a two-sided paired t-test, α = 0.05, power 0.8).
    m = 0.004
    b = np.array([0.86, 0.87])
    a = b + [m * (1 - math.sqrt(2)), m * (1 + math.sqrt(2))]
    result = statistics.compute(rows_for({"a": list(a), "b": list(b)}))
    (pair,) = result["pairs"]
    assert [pair[key] for key in ("ci_low", "ci_high", "p_value", "p_value_holm", "significant")] == [None] * 5
    assert pair["p_improvement_ci_low"] is None and result["optimizers"]["a"]["ci_low"] is None
    assert pair["sd_difference"] == pytest.approx(2 * m)
    assert pair["seeds_needed"] == result["seeds_needed"] == 34
    assert pair["sentence"].startswith("too few seeds to compare a and b: 2 seeds")
    assert "about 34 seeds" in pair["sentence"] and "from these 2 seeds" in pair["sentence"]

    # One seed: the SD cannot be estimated, so the assumption is used and said.
    single = statistics.compute(rows_for({"a": [0.88], "b": [0.87]}))["pairs"][0]
    assert single["seeds_needed"] == power.seeds_for_power(0.01, power.ASSUMED_SD) == 5  # effect size 2
    assert "assumed to be 0.50 points" in single["sentence"]
    # No difference at all: no seed count can be derived, and none is invented.
    same = statistics.compute(rows_for({"a": [0.88, 0.87], "b": [0.88, 0.87]}))
    assert same["pairs"][0]["seeds_needed"] is None and same["seeds_needed"] is None
    assert "scored the same" in same["pairs"][0]["sentence"]


def test_holm_adjusts_step_down_and_keeps_the_order_of_raw_p_values():
    raw = [0.01, 0.04, 0.03, 0.005]
    # Sorted: 0.005·4 = 0.02, 0.01·3 = 0.03, 0.03·2 = 0.06, then 0.04·1 = 0.04 is raised to 0.06.
    assert statistics.holm(raw) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert statistics.holm([0.5, 0.9]) == [1.0, 1.0] and statistics.holm([]) == []

    # In the report, Holm runs over every tested pair: three optimizers, three p-values.
    shifts = {"a": 0.0, "b": -0.004, "c": -0.001}
    noise = np.random.default_rng(3).normal(0, 0.002, (3, 8))
    result = statistics.compute(
        rows_for({name: list(0.87 + shift + noise[i]) for i, (name, shift) in enumerate(shifts.items())})
    )
    p_values = [pair["p_value"] for pair in result["pairs"]]
    assert [pair["p_value_holm"] for pair in result["pairs"]] == statistics.holm(p_values)
    assert all(pair["significant"] == (pair["p_value_holm"] < 0.05) for pair in result["pairs"])
    assert f"over {len(p_values)} pairs" in result["pairs"][0]["sentence"]


def test_the_bootstrap_is_seeded_and_an_interval_depends_on_its_own_data_only(monkeypatch):
    other = np.round(0.872 + np.random.default_rng(9).normal(0, 0.002, 10), 4)
    two = rows_for({"adam": list(other), "sgd": list(BASE)})
    first = statistics.compute(two)
    assert statistics.compute(two) == first  # bit for bit
    # Adding an optimizer changes no interval of the others (one index draw per call, per seed count).
    three = statistics.compute(two + rows_for({"svag": list(BASE[::-1])}))
    for key in ("ci_low", "ci_high"):
        assert three["optimizers"]["adam"][key] == pytest.approx(first["optimizers"]["adam"][key], rel=1e-12)
    for key in ("ci_low", "ci_high", "p_improvement_ci_low", "p_improvement_ci_high", "p_value"):
        assert three["pairs"][0][key] == pytest.approx(first["pairs"][0][key], rel=1e-12)
    monkeypatch.setattr(statistics, "BOOTSTRAP_SEED", 1)
    reseeded = statistics.compute(two)
    assert reseeded["pairs"][0]["ci_low"] != first["pairs"][0]["ci_low"]


def test_diverged_and_missing_accuracies_are_left_out_never_zero():
    rows = rows_for({"adam": [0.88, 0.89, None, 0.87], "sgd": [0.86, None, 0.85, 0.86], "wild": [None, None]})
    rows.append({"name": "adam", "seed": 9, "status": "completed", "test_accuracy": float("nan"), "chosen": True})
    rows += rows_for({"adam": [0.1] * 4}, chosen=False)  # another grid point: never compared
    result = statistics.compute(rows)
    adam, wild = result["optimizers"]["adam"], result["optimizers"]["wild"]
    assert (adam["n_seeds"], adam["n_excluded"]) == (3, 2) and adam["mean"] == pytest.approx(0.88)
    assert wild == {"mean": None, "ci_low": None, "ci_high": None, "n_seeds": 0, "n_excluded": 2}
    pairs = {(pair["a"], pair["b"]): pair for pair in result["pairs"]}
    assert pairs["adam", "sgd"]["n_seeds"] == 2  # seeds 0 and 3 only
    assert (
        "; adam's 2 run(s) without a test accuracy left out; sgd's 1 run(s) without a test accuracy left out)."
        in pairs["adam", "sgd"]["sentence"]
    )
    assert pairs["adam", "wild"]["sentence"] == (
        "adam and wild share no seed on which both have a test accuracy: nothing to compare (adam's 2 run(s) "
        "without a test accuracy left out; wild's 2 run(s) without a test accuracy left out)."
    )
    json.dumps(result, allow_nan=False)


def test_one_hundred_runs_give_every_pair_with_stable_keys():
    accuracies = {f"opt{k}": list(np.round(0.85 + 0.001 * k + NOISE * (k % 3), 4)) for k in range(10)}
    result = statistics.compute(rows_for(accuracies))
    assert len(result["optimizers"]) == 10 and len(result["pairs"]) == 45
    assert all(tuple(pair) == statistics.PAIR_KEYS for pair in result["pairs"])
    assert all(pair["ci_low"] <= pair["mean_difference"] <= pair["ci_high"] for pair in result["pairs"])
    assert json.loads(json.dumps(result, allow_nan=False)) == result


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


def test_anchors_match_only_the_same_problem_and_say_what_differs():
    original = anchors.ANCHORS[0]
    assert anchors.matches(original, "mlp", {"hidden": [128, 128]}, 20, 64) == []
    assert anchors.matches(original, "mlp", {"hidden": [128, 128]}, 4, 64) == ["4 epochs, not 20"]
    assert anchors.matches(original, "cnn_2c2d", {}, 20, 64) == ["model cnn_2c2d, not mlp"]
    settings = {
        "model": {"name": "mlp", "params": {"hidden": [128, 128]}},
        "training": {"epochs": 20, "batch_size": 64},
    }
    rows = anchors.anchor_rows(settings, [("adam-fast", "adam"), ("sgd", "sgd")], {"adam-fast": 0.861, "sgd": 0.85})
    assert rows[0]["ours"] == 0.861 and rows[0]["ours_text"] == "adam-fast, mean over seeds"
    assert rows[1]["ours"] is None and "hidden layers 128-128, not 256-128-100" in rows[1]["ours_text"]
    assert all(row["ours"] is None and "model mlp, not cnn_2c2d" in row["ours_text"] for row in rows[2:])
