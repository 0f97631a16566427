"""The report's "how sure" against a known truth: simulated experiments fed to statistics.compute.

Three optimizers paired by seed, a shared per-seed effect plus per-run noise, accuracies on the 1e-4 grid
(seeds only), or per-example 0/1 correctness on a sampled test set (seeds and test images). Truth: a and b
are equal (a null pair); c is better by exactly the equivalence margin (the hardest case for a false
"equivalent"). The adaptive design (3-seed pilot, seedplan, verdicts over all seeds) runs both ways.
Each check allows three Monte-Carlo standard errors. Put back the percentile bootstrap,
Satterthwaite's df alone, per-pair verdicts or seeds-only intervals, and one of these fails (see the
closing note of issue 18 for the record of each break).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.special
import scipy.stats

from tasks.reporting import seedplan, statistics

EXPERIMENTS = 1000
MARGIN = 0.002
NAMES = ("a", "b", "c")
PAIRS = (("a", "b"), ("a", "c"), ("b", "c"))
MEASURED: list[tuple[str, Tally, np.ndarray | None]] = []  # (label, tally, planned seeds): printed at the end
MC = 3 * math.sqrt(0.95 * 0.05 / EXPERIMENTS)  # three Monte-Carlo standard errors of a 95% (or 5%) rate


def rows_of(accuracies: dict[str, np.ndarray]) -> list[dict]:
    return [
        {"name": name, "seed": seed, "status": "completed", "test_accuracy": float(value), "chosen": True}
        for name, values in accuracies.items()
        for seed, value in enumerate(values)
    ]


def wrong_verdict(pair: dict, truth: float) -> bool:
    """A verdict the truth contradicts: a beat that is none or the wrong way round, or a false equivalence."""
    verdict = pair["verdict"]
    if verdict["kind"] == "beats":
        return truth == 0 or (verdict["difference"] > 0) != (truth > 0)
    return verdict["kind"] == "equivalent" and abs(truth) >= MARGIN - 1e-12


def assert_holds_95_percent(tally: Tally) -> None:
    assert 0.93 <= tally.rate("mean") <= 0.97
    assert 0.93 <= tally.rate("difference") <= 0.97


class Tally:
    """Coverage and error counts over simulated reports."""

    def __init__(self):
        self.counts: dict[str, list[float]] = {}

    def add(self, key: str, value: bool) -> None:
        self.counts.setdefault(key, []).append(float(value))

    def rate(self, key: str) -> float:
        return float(np.mean(self.counts[key]))

    def record(self, result: dict, means: dict[str, float], win_truth: dict | None = None) -> None:
        for name in NAMES:
            optimizer = result["optimizers"][name]
            self.add("mean", optimizer["ci_low"] <= means[name] <= optimizer["ci_high"])
        family_wrong = False
        for pair in result["pairs"]:
            truth = means[pair["a"]] - means[pair["b"]]
            self.add("difference", pair["ci_low"] <= truth <= pair["ci_high"])
            family_wrong |= wrong_verdict(pair, truth)
            if truth == 0:
                self.add("null beats", pair["verdict"]["kind"] == "beats")
                self.add("null p < 0.05", pair["p_value"] < 0.05)
            if win_truth:
                p = win_truth[pair["a"], pair["b"]]
                self.add("p_improvement", pair["p_improvement_ci_low"] <= p <= pair["p_improvement_ci_high"])
            self.add("decisive", pair["verdict"]["kind"] != "undecided")
        self.add("family-wise error", family_wrong)


# Seeds only: shared seed effect SD 0.3 points, per-run noise SD 0.2 points.
MEANS = {"a": 0.880, "b": 0.880, "c": 0.880 + MARGIN}
SHARED_SD, RUN_SD = 0.003, 0.002


def seed_accuracies(rng, experiments: int, seeds: int, run_sd: float = RUN_SD) -> np.ndarray:
    """experiments × optimizers × seeds accuracies on the 1e-4 grid."""
    centre = np.array([MEANS[name] for name in NAMES])[None, :, None]
    shared = rng.normal(0, SHARED_SD, (experiments, 1, seeds))
    return np.round(centre + shared + rng.normal(0, run_sd, (experiments, len(NAMES), seeds)), 4)


def win_probabilities(rng) -> dict[tuple[str, str], float]:
    """P(A's rounded accuracy > B's) on one seed, by a 2,000,000-draw Monte Carlo (error < 0.0004)."""
    draws = seed_accuracies(rng, 2_000_000, 1)[:, :, 0]
    return {(a, b): float(np.mean(draws[:, NAMES.index(a)] > draws[:, NAMES.index(b)])) for a, b in PAIRS}


@pytest.fixture(scope="module")
def seeds_only():
    rng = np.random.default_rng(2018)
    wins = win_probabilities(rng)
    tallies = {}
    for seeds in (3, 5, 10):
        tally = Tally()
        for accuracies in seed_accuracies(rng, EXPERIMENTS, seeds):
            result = statistics.compute(rows_of(dict(zip(NAMES, accuracies))), margin=MARGIN)
            tally.record(result, MEANS, wins)
        tallies[seeds] = tally
        MEASURED.append((f"seeds only, n={seeds}", tally, None))
    return tallies


@pytest.mark.parametrize("seeds", [3, 5, 10])
def test_intervals_over_seeds_hold_95_percent_at_3_5_and_10_seeds(seeds_only, seeds):
    tally = seeds_only[seeds]
    assert_holds_95_percent(tally)
    assert tally.rate("p_improvement") >= 0.95 - MC  # Clopper–Pearson is exact, hence conservative


@pytest.mark.parametrize("seeds", [3, 5, 10])
def test_a_null_pair_is_rarely_called_a_win_and_all_verdicts_together_rarely_err(seeds_only, seeds):
    tally = seeds_only[seeds]
    assert tally.rate("null p < 0.05") <= 0.05 + MC  # the per-pair test keeps its level
    assert tally.rate("null beats") <= 0.05 + MC
    assert tally.rate("family-wise error") <= 0.05 + MC


# Seeds and test images: a probit model. Run (optimizer o, seed s) gets image i right when
# m_o + a_s + b_os + √RHO_SHARED z_i + √RHO_OWN u_oi + √(1 − RHO_SHARED − RHO_OWN) w_osi > 0, all standard
# normal but a (SD 0.04) and b (SD 0.03); z is the image's difficulty for everyone, u its difficulty for one
# optimizer. The population accuracy is Φ(m_o / √(1 + 0.04² + 0.03²)), known exactly; every experiment
# draws a fresh test set of 1,000 images from that population.
LATENT = {"a": 1.20, "b": 1.20, "c": 1.225}
SEED_SD, RUN_EFFECT_SD, RHO_SHARED, RHO_OWN, IMAGES = 0.04, 0.03, 0.75, 0.10, 1000
SCALE = math.sqrt(1 + SEED_SD**2 + RUN_EFFECT_SD**2)
POPULATION = {name: float(scipy.special.ndtr(m / SCALE)) for name, m in LATENT.items()}


def correctness_experiment(
    rng, seeds: int, latent: dict[str, float] = LATENT, images: int = IMAGES
) -> dict[str, np.ndarray]:
    """Optimizer → seeds × images 0/1 correctness on one freshly drawn test set."""
    shared = math.sqrt(RHO_SHARED) * rng.standard_normal(images)
    seed_effect = rng.normal(0, SEED_SD, (seeds, 1))
    out = {}
    for name, m in latent.items():
        own = math.sqrt(RHO_OWN) * rng.standard_normal(images)
        run = rng.normal(0, RUN_EFFECT_SD, (seeds, 1))
        noise = math.sqrt(1 - RHO_SHARED - RHO_OWN) * rng.standard_normal((seeds, images))
        out[name] = m + seed_effect + run + shared + own + noise > 0
    return out


def seeds_only_coverage(differences: np.ndarray, truth: np.ndarray) -> float:
    """How often the seeds-only paired t interval (by hand: t.ppf) covers the population difference.

    `differences`: experiments × pairs × seeds; `truth`: one per pair.
    """
    n = differences.shape[-1]
    half = scipy.stats.t.ppf(0.975, n - 1) * differences.std(axis=-1, ddof=1) / math.sqrt(n)
    return float(np.mean(np.abs(differences.mean(axis=-1) - truth) <= half))


@pytest.fixture(scope="module")
def seeds_and_test():
    rng = np.random.default_rng(1705)
    tallies = {}
    for seeds in (3, 5, 10):
        tally, differences = Tally(), []
        for _ in range(EXPERIMENTS):
            correct = correctness_experiment(rng, seeds)
            accuracies = {name: matrix.mean(axis=1) for name, matrix in correct.items()}
            vectors = {(name, seed): matrix[seed] for name, matrix in correct.items() for seed in range(seeds)}
            tally.record(statistics.compute(rows_of(accuracies), margin=MARGIN, correctness=vectors), POPULATION)
            differences.append([accuracies[a] - accuracies[b] for a, b in PAIRS])
        truths = np.array([POPULATION[a] - POPULATION[b] for a, b in PAIRS])
        tally.counts["seeds-only difference"] = [seeds_only_coverage(np.array(differences), truths)]
        tallies[seeds] = tally
        MEASURED.append((f"seeds + test images, n={seeds}", tally, None))
    return tallies


@pytest.mark.parametrize("seeds", [3, 5, 10])
def test_intervals_over_seeds_and_test_images_hold_95_percent_of_the_population_accuracy(seeds_and_test, seeds):
    tally = seeds_and_test[seeds]
    assert_holds_95_percent(tally)
    assert tally.rate("family-wise error") <= 0.05 + MC
    if seeds == 10:  # the test sample's share is large by then: ignoring it misses the population often
        assert tally.rate("seeds-only difference") < 0.9


# The adaptive design: a 3-seed pilot, then tasks.reporting.seedplan's seeds (at most 20), then the verdicts
# over all seeds. Per-run noise 0.08 points, so that most pairs need between the pilot and the cap.
PILOT, MAX_SEEDS, ADAPTIVE_RUN_SD = 3, 20, 0.0008


def adaptive_report(runs: dict[str, np.ndarray], margin: float, max_seeds: int, vectors=None) -> tuple[dict, list]:
    """One adaptive experiment: the plan from the pilot seeds, then the report over each optimizer's planned seeds."""
    pilot = rows_of({name: values[:PILOT] for name, values in runs.items()})
    plan = seedplan.seed_plan(pilot, margin=margin, max_seeds=max_seeds, correctness=vectors)
    final = {name: values[: plan["optimizers"][name]["seeds"]] for name, values in runs.items()}
    result = statistics.compute(rows_of(final), margin=margin, correctness=vectors, plan=plan)
    return result, [plan["optimizers"][name]["seeds"] for name in NAMES]


def assert_keeps_its_level(tally: Tally) -> None:
    assert_holds_95_percent(tally)
    assert tally.rate("null beats") <= 0.05 + MC
    assert tally.rate("family-wise error") <= 0.05 + MC


@pytest.fixture(scope="module")
def adaptive():
    rng = np.random.default_rng(1990)
    tally, planned = Tally(), []
    for accuracies in seed_accuracies(rng, EXPERIMENTS, MAX_SEEDS, ADAPTIVE_RUN_SD):
        result, seeds = adaptive_report(dict(zip(NAMES, accuracies)), MARGIN, MAX_SEEDS)
        tally.record(result, MEANS)
        planned.append(seeds)
    MEASURED.append(("adaptive, seeds only", tally, np.array(planned)))
    return tally, np.array(planned)


def test_the_adaptive_design_keeps_its_level_and_mostly_settles_every_pair(adaptive):
    tally, planned = adaptive
    assert_keeps_its_level(tally)
    assert PILOT < np.median(planned) < MAX_SEEDS  # the plan really varies the seed count
    assert tally.rate("decisive") >= 0.8 - 3 * math.sqrt(0.8 * 0.2 / (3 * EXPERIMENTS))


# The adaptive design with the test sample: on 500 images the test part of a difference alone is about
# ±1.5 points at the simultaneous level, so the margin is 4 points, and c is better by exactly that margin.
TEST_MARGIN, TEST_MAX_SEEDS, TEST_IMAGES = 0.04, 12, 500
ADAPTIVE_LATENT = {
    **{name: LATENT[name] for name in ("a", "b")},
    "c": float(SCALE * scipy.special.ndtri(POPULATION["a"] + TEST_MARGIN)),
}
ADAPTIVE_POPULATION = {name: float(scipy.special.ndtr(m / SCALE)) for name, m in ADAPTIVE_LATENT.items()}


@pytest.fixture(scope="module")
def adaptive_with_test():
    rng = np.random.default_rng(2007)
    tally, planned = Tally(), []
    for _ in range(EXPERIMENTS):
        correct = correctness_experiment(rng, TEST_MAX_SEEDS, ADAPTIVE_LATENT, TEST_IMAGES)
        accuracies = {name: matrix.mean(axis=1) for name, matrix in correct.items()}
        vectors = {(name, seed): matrix[seed] for name, matrix in correct.items() for seed in range(TEST_MAX_SEEDS)}
        result, seeds = adaptive_report(accuracies, TEST_MARGIN, TEST_MAX_SEEDS, vectors)
        tally.record(result, ADAPTIVE_POPULATION)
        planned.append(seeds)
    MEASURED.append(("adaptive, seeds + test", tally, np.array(planned)))
    return tally, np.array(planned)


def test_the_adaptive_design_with_the_test_sample_keeps_its_level(adaptive_with_test):
    tally, planned = adaptive_with_test
    assert_keeps_its_level(tally)
    assert PILOT < np.median(planned) <= TEST_MAX_SEEDS


@pytest.fixture(scope="module", autouse=True)
def coverage_table(request):
    """After the module: the measured rates, printed even under -q (docs/statistics.md quotes them)."""
    yield
    lines = []
    for label, tally, planned in MEASURED:
        line = (
            f"  {label:26s} mean {tally.rate('mean'):.3f}  difference {tally.rate('difference'):.3f}"
            f"  family-wise error {tally.rate('family-wise error'):.3f}"
        )
        if "p_improvement" in tally.counts:
            line += f"  P(A>B) {tally.rate('p_improvement'):.3f}"
        if planned is not None:
            line += f"  decisive {tally.rate('decisive'):.3f}  seeds median {np.median(planned):.0f}"
        lines.append(line)
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    with capture.global_and_fixture_disabled():
        print(f"\nstatistics simulation, {EXPERIMENTS} experiments per line, coverage of the 95% intervals:")
        print("\n".join(lines))
