"""How long the report's statistics and a whole report take, on synthetic runs (no training, no TensorFlow).

  statistics-100-runs  tasks.reporting.statistics.compute over 10 optimizers × 10 seeds of summary rows
                       (45 pairs, 10,000 bootstrap resamples each); goal < 2 s
  report-70-runs       build_report for 7 optimizers × 10 seeds of tiny fake run folders (the report
                       tests' fixtures: real metrics.parquet, run.json, evaluation.json); goal < 30 s

Each is the median of --repeat timings (default 3). The run folders are written once, outside the timing.

    .venv/bin/python benchmarks/report_build.py [--repeat 3] [--check]
"""

from __future__ import annotations

import argparse
import statistics as stdlib_statistics
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))  # run from a checkout without installing
import numpy as np  # noqa: E402
from goal import goal_line  # noqa: E402 - beside this script

from tasks.data.arrays import load_arrays  # noqa: E402
from tasks.reporting import statistics  # noqa: E402
from tasks.reporting.report import build_report  # noqa: E402
from tests.report_fixtures import TEST_ROWS, build_kwargs, write_run, write_test_arrow  # noqa: E402

GOALS = {"statistics-100-runs": 2.0, "report-70-runs": 30.0}
OPTIMIZERS = ("sgd", "momentum", "nesterov", "adam", "rmsprop", "msvag", "svag")


def summary_rows(optimizers: int, seeds: int) -> list[dict]:
    """Chosen-point summary rows with accuracies on the test set's 1/10,000 grid and one diverged run."""
    rng = np.random.default_rng(0)
    rows = []
    for index in range(optimizers):
        for seed in range(seeds):
            accuracy = round(0.86 + 0.002 * index + rng.normal(0, 0.003), 4)
            diverged = index == optimizers - 1 and seed == 0
            rows.append(
                {
                    "name": f"opt{index}",
                    "seed": seed,
                    "status": "diverged" if diverged else "completed",
                    "test_accuracy": None if diverged else accuracy,
                    "chosen": True,
                }
            )
    return rows


def write_runs(root: Path, optimizers: int, seeds: int) -> tuple[list[dict], Path]:
    """Fake run folders (tests/report_fixtures.py) for `optimizers` entries × `seeds`, and the test set."""
    test_arrow = write_test_arrow(root / "test.arrow")
    _, labels = load_arrays(test_arrow)
    rng = np.random.default_rng(1)
    runs = []
    for index, name in enumerate(OPTIMIZERS[:optimizers]):
        for seed in range(seeds):
            test = (160 + 2 * index + int(rng.integers(-2, 3))) / TEST_ROWS  # the fixture scores on a 1/200 grid
            runs.append(
                write_run(
                    root / "runs",
                    labels,
                    name=name,
                    optimizer=name,
                    params={},
                    learning_rate=0.01,
                    seed=seed,
                    seconds=2.0 + 0.1 * index,
                    outcome=(seed, 0.8 + 0.01 * index, test),
                )
            )
    return runs, test_arrow


def median_seconds(action, repeat: int) -> float:
    timings = []
    for _ in range(repeat):
        started = time.perf_counter()
        action()
        timings.append(time.perf_counter() - started)
    return stdlib_statistics.median(timings)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=3, help="timings per measurement; the median is reported")
    parser.add_argument("--check", action="store_true", help="exit 1 when a goal is missed")
    args = parser.parse_args(argv)

    rows = summary_rows(10, 10)
    measured = {"statistics-100-runs": median_seconds(lambda: statistics.compute(rows), args.repeat)}
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        runs, test_arrow = write_runs(root, 7, 10)
        kwargs = build_kwargs(root, runs, test_arrow)
        measured["report-70-runs"] = median_seconds(lambda: build_report(root / "report", **kwargs), args.repeat)

    missed = False
    for name, seconds in measured.items():
        met = seconds < GOALS[name]
        missed |= not met
        goal_line(name, f"{seconds:.2f} s", f"< {GOALS[name]:g} s", met)
    return 1 if args.check and missed else 0


if __name__ == "__main__":
    sys.exit(main())
