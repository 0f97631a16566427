"""Interval widths before and after issue 18, on the same simulated rows: `python scripts/interval_widths.py`.

Before: the 95% percentile bootstrap the report used (scipy.stats.bootstrap, 10,000 resamples, seed
20180417). After: tasks.reporting.statistics' Student-t intervals over seeds, the simultaneous interval
the verdicts are read from, and the intervals over seeds and a 10,000-image test set. The rows: three
optimizers paired by seed, shared seed effect SD 0.3 points, per-run noise SD 0.2 points, about 88%
accuracy (the probit model of tests/test_statistics_simulation.py, scaled to 10,000 images).
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import scipy.special
import scipy.stats

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tasks.reporting import statistics  # noqa: E402

IMAGES, LATENT = 10_000, {"adam": 1.19, "momentum": 1.18, "sgd": 1.17}


def experiment(seeds: int, rng) -> dict[str, np.ndarray]:
    shared, seed_effect = math.sqrt(0.75) * rng.standard_normal(IMAGES), rng.normal(0, 0.012, (seeds, 1))
    return {
        name: m
        + seed_effect
        + rng.normal(0, 0.01, (seeds, 1))
        + shared
        + math.sqrt(0.1) * rng.standard_normal(IMAGES)
        + math.sqrt(0.15) * rng.standard_normal((seeds, IMAGES))
        > 0
        for name, m in LATENT.items()
    }


def bootstrap_width(values: np.ndarray) -> float:
    interval = scipy.stats.bootstrap(
        (values,), np.mean, n_resamples=10_000, method="percentile", rng=np.random.default_rng(20_180_417)
    ).confidence_interval
    return float(interval.high - interval.low)


def width(low: float, high: float) -> str:
    return f"{100 * (high - low):5.2f}"


def main() -> None:
    population = scipy.special.ndtr(LATENT["adam"] / math.sqrt(1 + 0.012**2 + 0.01**2))
    print(f"95% interval widths in points of test accuracy (adam's population accuracy {population:.4f})")
    print("seeds | adam mean: bootstrap  t  t+test | adam − momentum: bootstrap  t  simultaneous  t+test | test SE")
    for seeds in (3, 5, 10):
        correct = experiment(seeds, np.random.default_rng(seeds))
        accuracies = {name: matrix.mean(axis=1) for name, matrix in correct.items()}
        rows = [
            {"name": name, "seed": seed, "status": "completed", "test_accuracy": float(value), "chosen": True}
            for name, values in accuracies.items()
            for seed, value in enumerate(values)
        ]
        vectors = {(name, seed): matrix[seed] for name, matrix in correct.items() for seed in range(seeds)}
        seeds_only, both = statistics.compute(rows), statistics.compute(rows, correctness=vectors)
        mean, mean_both = seeds_only["optimizers"]["adam"], both["optimizers"]["adam"]
        pair, pair_both = seeds_only["pairs"][0], both["pairs"][0]  # adam − momentum
        difference = accuracies["adam"] - accuracies["momentum"]
        print(
            f"{seeds:5d} | {width(0, bootstrap_width(accuracies['adam']))} {width(mean['ci_low'], mean['ci_high'])} "
            f"{width(mean_both['ci_low'], mean_both['ci_high'])} | {width(0, bootstrap_width(difference))} "
            f"{width(pair['ci_low'], pair['ci_high'])} "
            f"{width(pair['simultaneous_ci_low'], pair['simultaneous_ci_high'])} ({pair['verdict']['confidence']:.1%}) "
            f"{width(pair_both['ci_low'], pair_both['ci_high'])} | mean {100 * mean_both['se_test']:.2f}, "
            f"difference {100 * pair_both['se_test']:.2f}"
        )


if __name__ == "__main__":
    main()
