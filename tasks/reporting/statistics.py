"""Does one optimizer really beat another? Paired statistics over seeds (and test images), from summary rows.

The input is the rows of summary.parquet (one per run); only rows whose `chosen` is true count: each
entry at its chosen grid point. For a given seed every optimizer starts from the same initial weights and
sees the same data order, so runs are paired by seed, and a pair (A, B) is compared on the seeds on which
both have a test accuracy. Optionally, each run's per-example test correctness (the same test images in
the same order for every run): then the runs are paired by image too, and every interval also counts the
test set as the sample it is (tasks.reporting.intervals).

Choices, and why:
- Intervals are Student-t intervals (tasks.reporting.intervals): for an optimizer's mean and for a pair's
  mean paired difference, at 95% each. Over seeds only they are the one-sample and paired t-test's own
  intervals, which hold their level at 3 seeds under normality; a percentile bootstrap of 3-5 values
  covers 75-85%. A difference of two accuracies over 10,000 test images is a sum of many small effects,
  close to normal. With per-example correctness the variance adds the test-sample part, and the degrees
  of freedom combine the two parts' (see tasks.reporting.intervals for why not Satterthwaite's alone).
- p-values come from the same t statistic (two-sided). Wilcoxon's signed-rank test assumes less, but its
  exact p-value cannot go below 2 / 2^n (0.0625 at 5 seeds), so after any multiplicity correction it could
  almost never reject at the seed counts this project runs.
- Verdicts (tasks.reporting.verdicts) are read off one simultaneous interval per pair, Bonferroni over
  the K pairs that have an interval, with the equivalence margin; `significant` means "beats", which is
  the Bonferroni-adjusted p-value (`p_value_bonferroni`, min(1, K p)) below ALPHA.
- P(A > B) is the fraction of paired seeds on which A scored strictly higher; a tie is no win for either
  (`n_ties` counts them), so the count is binomial and its Clopper–Pearson interval is exact.
- Fewer than MIN_SEEDS paired seeds: no interval, no p-value, no verdict but "undecided", and the seeds
  that would settle it. Undecided pairs are sized from the variance only (tasks.reporting.power).
- A diverged run, or a missing or non-finite test accuracy, has no test accuracy. It is left out of its
  optimizer's mean and of every pair on that seed; it is never counted as 0 (a number the model never
  produced). n_excluded counts those runs, and each pair's sentence names the optimizers that lost seeds.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from itertools import combinations
from typing import Any

import numpy as np

from tasks.core.config import DEFAULT_EQUIVALENCE_MARGIN
from tasks.core.errors import ReportError
from tasks.reporting import measures, power, verdicts
from tasks.reporting.intervals import Spread, proportion_interval, simultaneous_confidence

CONFIDENCE = 0.95
ALPHA = power.ALPHA
MIN_SEEDS = power.MIN_SEEDS
EQUIVALENCE_MARGIN = DEFAULT_EQUIVALENCE_MARGIN  # the config's default `equivalence_margin` (tasks.core.config)
PAIR_KEYS = (
    "a",
    "b",
    "n_seeds",
    "seeds_run",
    "mean_difference",
    "ci_low",
    "ci_high",
    "simultaneous_ci_low",
    "simultaneous_ci_high",
    "p_improvement",
    "p_improvement_ci_low",
    "p_improvement_ci_high",
    "n_ties",
    "p_value",
    "p_value_bonferroni",
    "significant",
    "sd_difference",
    "se_seeds",
    "se_test",
    "df",
    "seeds_needed",
    "verdict",
    "seed_plan",
    "sentence",
)
Correctness = Mapping[tuple[str, int], np.ndarray]  # (entry name, seed) → 0/1 per test example


@dataclass(frozen=True)
class Paired:
    """Two entries on the seeds where both have a test accuracy: per-seed differences, and per example."""

    a: str
    b: str
    seeds_run: int
    differences: np.ndarray
    matrix: np.ndarray | None  # seeds × examples of correctness a − b, when per-example data is given


def compute(
    rows: Iterable[Mapping[str, Any]],
    *,
    margin: float = EQUIVALENCE_MARGIN,
    correctness: Correctness | None = None,
    split_varies: bool = False,
    plan: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The "statistics" block of report.json from summary rows (name, seed, status, test_accuracy, chosen).

    `correctness` adds the test sample to every interval; `split_varies` says the validation split is drawn
    from each run's seed (it then counts among the seeds' noise); `plan` is tasks.reporting.seedplan's.
    """
    rows = list(rows)
    accuracies, lost = chosen_accuracies(rows)
    matrices = correctness_matrices(accuracies, correctness) if correctness is not None else None
    ran = seeds_run(rows)
    optimizers = {name: optimizer_result(name, accuracies[name], matrices, lost) for name in accuracies}
    pairs = [paired(accuracies, matrices, ran, a, b) for a, b in combinations(accuracies, 2)]
    spreads = [measures.spread(pair.differences, pair.matrix) for pair in pairs]
    comparisons = sum(spread is not None for spread in spreads)
    pooled = power.pooled_sd([pair.differences for pair in pairs])
    planned = {(entry["a"], entry["b"]): entry for entry in (plan or {}).get("pairs", [])}
    sources = sources_text(matrices is not None, split_varies)
    context = {"margin": margin, "comparisons": comparisons, "sources": sources, "lost": lost}
    context["size"] = {"margin": margin, "pooled": pooled, "comparisons": len(pairs)}  # all pairs, once seeded
    out_pairs = [
        pair_result(pair, spread, planned.get((pair.a, pair.b)), **context) for pair, spread in zip(pairs, spreads)
    ]
    needed = [pair["seeds_needed"] for pair in out_pairs if pair["seeds_needed"] is not None]
    return {
        "optimizers": optimizers,
        "pairs": out_pairs,
        "variance": variance_table(optimizers, matrices is not None, split_varies),
        "equivalence_margin": margin,
        "seeds_needed": max(needed) if needed else None,
        "method": method(margin, comparisons, sources, split_varies),
    }


def chosen_accuracies(rows: Iterable[Mapping[str, Any]]) -> tuple[dict[str, dict[int, float]], dict[str, int]]:
    """Entry → {seed: test accuracy} (seed order) over chosen rows, and entry → runs without an accuracy.

    Entries keep the order of their first row (config order); an entry whose every run diverged is kept,
    with no seeds, so that it still appears in the tables.
    """
    accuracies: dict[str, dict[int, float]] = {}
    lost: dict[str, int] = defaultdict(int)
    for row in rows:
        if not row.get("chosen"):
            continue
        name, accuracy = str(row["name"]), row.get("test_accuracy")
        seeds = accuracies.setdefault(name, {})
        usable = row.get("status") == "completed" and accuracy is not None and math.isfinite(accuracy)
        if usable:
            seeds[int(row["seed"])] = float(accuracy)
        else:
            lost[name] += 1
    return {name: dict(sorted(seeds.items())) for name, seeds in accuracies.items()}, dict(lost)


def seeds_run(rows: Iterable[Mapping[str, Any]]) -> dict[str, set[int]]:
    """Entry → the seeds it was run on at its chosen point, diverged or not."""
    ran: dict[str, set[int]] = defaultdict(set)
    for row in rows:
        if row.get("chosen"):
            ran[str(row["name"])].add(int(row["seed"]))
    return ran


def correctness_matrices(
    accuracies: Mapping[str, Mapping[int, float]], correctness: Correctness
) -> dict[str, dict[int, np.ndarray]]:
    """Entry → {seed: 0/1 vector} for every run with a test accuracy, checked against its accuracy.

    ReportError names the run when a vector is missing, has another length than the others, holds
    anything but 0 and 1, or does not give the run's reported test accuracy.
    """
    checked: dict[str, dict[int, np.ndarray]] = {}
    length = None
    for name, seeds in accuracies.items():
        for seed, accuracy in seeds.items():
            where = f"per-example test correctness of {name!r} seed {seed}"
            if (name, seed) not in correctness:
                raise ReportError(f"{where}: missing; every completed run needs one, or none of them")
            vector = np.asarray(correctness[name, seed])
            if vector.ndim != 1 or vector.size == 0 or (length is not None and vector.size != length):
                raise ReportError(f"{where}: expected {length or 'one or more'} values, found shape {vector.shape}")
            if vector.dtype != np.bool_ and not ((vector == 0) | (vector == 1)).all():
                raise ReportError(f"{where}: expected only 0/1 (or booleans), found other values")
            length = vector.size
            if abs(float(vector.mean()) - accuracy) > 0.5 / length:
                raise ReportError(
                    f"{where}: gives accuracy {vector.mean():.6f}, but summary.parquet says {accuracy:.6f}; "
                    "the predictions belong to another run or test set: rerun its evaluation"
                )
            checked.setdefault(name, {})[seed] = vector.astype(np.int8)
    return checked


def paired(
    accuracies: Mapping[str, Mapping[int, float]],
    matrices: Mapping[str, Mapping[int, np.ndarray]] | None,
    ran: Mapping[str, set[int]],
    a: str,
    b: str,
) -> Paired:
    common = [seed for seed in accuracies[a] if seed in accuracies[b]]
    differences = np.array([accuracies[a][seed] - accuracies[b][seed] for seed in common], dtype=np.float64)
    matrix = None
    if matrices is not None and common:
        matrix = np.stack([matrices[a][seed] - matrices[b][seed] for seed in common])
    return Paired(a, b, len(ran[a] & ran[b]), differences, matrix)


def optimizer_result(
    name: str, seeds: Mapping[int, float], matrices: Mapping[str, Mapping[int, np.ndarray]] | None, lost: Mapping
) -> dict[str, Any]:
    values = np.array(list(seeds.values()), dtype=np.float64)
    matrix = np.stack(list(matrices[name].values())) if matrices and seeds else None
    spread = measures.spread(values, matrix)
    low, high = spread.interval(CONFIDENCE) if spread else (None, None)
    return {
        "mean": measures.mean(values),
        "ci_low": low,
        "ci_high": high,
        "n_seeds": int(values.size),
        "n_excluded": lost.get(name, 0),
        **spread_fields(spread, values),
    }


def spread_fields(spread: Spread | None, values: np.ndarray) -> dict[str, Any]:
    """The per-run SD over seeds and the standard error by source (se_test None when not measured)."""
    return {
        "sd_seeds": measures.sd(values),
        "se_seeds": math.sqrt(spread.seed_variance) if spread else None,
        "se_test": math.sqrt(spread.test_variance) if spread and spread.includes_test else None,
        "df": spread.df if spread else None,
    }


def pair_result(
    pair: Paired,
    spread: Spread | None,
    planned: Mapping[str, Any] | None,
    *,
    margin: float,
    comparisons: int,
    sources: str,
    lost: Mapping[str, int],
    size: Mapping[str, Any],
) -> dict[str, Any]:
    d, n = pair.differences, pair.differences.size
    level = simultaneous_confidence(CONFIDENCE, comparisons)
    low, high = spread.interval(CONFIDENCE) if spread else (None, None)
    simultaneous = spread.interval(level) if spread else None
    p_value = spread.p_value() if spread else None
    win_low, win_high = proportion_interval(measures.wins(d), n, CONFIDENCE) if spread else (None, None)
    settled = simultaneous is not None and verdicts.decide(*simultaneous, margin) != verdicts.UNDECIDED
    sizing = None if settled or not n else settle_sizing(pair, spread, **size)
    found = verdicts.verdict(pair.a, pair.b, measures.mean(d), simultaneous, n, level, margin, sizing)
    fields = spread_fields(spread, d)
    result = {
        "a": pair.a,
        "b": pair.b,
        "n_seeds": n,
        "seeds_run": pair.seeds_run,
        "mean_difference": measures.mean(d),
        "ci_low": low,
        "ci_high": high,
        "simultaneous_ci_low": simultaneous[0] if simultaneous else None,
        "simultaneous_ci_high": simultaneous[1] if simultaneous else None,
        "p_improvement": measures.win_fraction(d),
        "p_improvement_ci_low": win_low,
        "p_improvement_ci_high": win_high,
        "n_ties": measures.ties(d),
        "p_value": p_value,
        "p_value_bonferroni": None if p_value is None else min(1.0, comparisons * p_value),
        "significant": None if spread is None else found.kind == verdicts.BEATS,
        "sd_difference": fields["sd_seeds"],
        "se_seeds": fields["se_seeds"],
        "se_test": fields["se_test"],
        "df": fields["df"],
        "seeds_needed": found.seeds_to_settle,
        "verdict": found.to_json(),
        "seed_plan": dict(planned) if planned else None,
    }
    result["sentence"] = verdicts.sentence(found, result, sizing, comparisons, sources, lost)
    return {key: result[key] for key in PAIR_KEYS}


def settle_sizing(
    pair: Paired, spread: Spread | None, *, margin: float, pooled: float | None, comparisons: int
) -> power.Sizing:
    """The seeds that would settle an undecided pair, from its variance (tasks.reporting.power)."""
    sd, source = power.chosen_sd(pair.differences, pooled)
    test_variance = (spread or measures.test_part(pair.matrix)).test_variance
    return power.seeds_to_settle(sd, source, test_variance, margin, comparisons)


def sources_text(per_example: bool, split_varies: bool) -> str:
    """Which sources of noise every interval includes, in words."""
    seeds = "seeds (initialization, data order" + (", validation split)" if split_varies else ")")
    return f"{seeds} and test images" if per_example else f"{seeds} only, test images held fixed"


def variance_table(optimizers: Mapping[str, Mapping[str, Any]], per_example: bool, split_varies: bool) -> list[dict]:
    """Per optimizer: how much of its mean's standard error comes from seeds, and from the test sample."""
    table = []
    for name, result in optimizers.items():
        seed, test = result["se_seeds"], result["se_test"]
        total = None if seed is None else math.hypot(seed, test or 0.0)
        table.append(
            {
                "name": name,
                "n_seeds": result["n_seeds"],
                "sd_seeds": result["sd_seeds"],
                "se_seeds": seed,
                "se_test": test,
                "se_total": total,
                "test_share": None if test is None or not total else test**2 / total**2,
            }
        )
    return table


def method(margin: float, comparisons: int, sources: str, split_varies: bool) -> dict[str, Any]:
    return {
        "confidence": CONFIDENCE,
        "interval": "Student t",
        "test": "t-test of the mean paired difference (scipy.stats.t), two-sided",
        "correction": f"Bonferroni over the {comparisons} pair(s) with an interval",
        "simultaneous_confidence": simultaneous_confidence(CONFIDENCE, comparisons),
        "comparisons": comparisons,
        "p_improvement": "Clopper–Pearson exact interval; ties count as no win",
        "sources": sources,
        "split_varies": split_varies,
        "equivalence_margin": margin,
        "alpha": ALPHA,
        "power": power.POWER,
        "min_seeds": MIN_SEEDS,
    }
