"""Fake but self-consistent run folders for report tests: no TensorFlow, no training.

Each run gets a metrics.parquet, a run.json and an evaluation.json whose test scores come from real
predictions on a tiny synthetic test set, passed through the same scoring code evaluate_run uses.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from tasks.data.arrays import load_arrays, write_arrays
from tasks.evaluation.evaluate import read_metrics, score_predictions, summarize_metrics
from tests.synthetic import make_images_labels

TEST_ROWS = 200  # accuracies below are multiples of 1/200
EPOCHS = 4

# (entry name, registry name, params, seconds per epoch, {learning rate: [(seed, final val acc, test acc) or
#  (seed, "diverged")]}). adam: 0.001 wins on validation, 0.01 on test; momentum: lr 1.0 has the best single
#  validation accuracy but a diverged seed, so 0.01 is chosen.
SCENARIO = [
    ("sgd", "sgd", {}, 2.0, {0.1: [(0, 0.80, 0.795), (1, 0.82, 0.81)]}),
    (
        "adam",
        "adam",
        {"beta1": 0.9, "beta2": 0.999, "epsilon": 1e-8},
        3.0,
        {
            0.001: [(0, 0.86, 0.82), (1, 0.86, 0.83)],
            0.01: [(0, 0.84, 0.88), (1, 0.83, 0.87)],
        },
    ),
    (
        "momentum",
        "momentum",
        {"momentum": 0.9},
        2.5,
        {
            0.01: [(0, 0.83, 0.835), (1, 0.84, 0.845)],
            1.0: [(0, "diverged"), (1, 0.87, 0.80)],
        },
    ),
]


def write_test_arrow(path: Path) -> Path:
    images, labels = make_images_labels(TEST_ROWS, seed=2)
    write_arrays(path, images, labels)
    return path


def _metrics(final_val: float, epochs: int, seconds: float) -> pa.Table:
    # Validation peaks at epoch 2, so best and final epochs differ.
    val = [final_val - 0.1, final_val + 0.01, final_val - 0.005, final_val][:epochs]
    return pa.table(
        {
            "epoch": pa.array(range(1, epochs + 1), pa.int32()),
            "train_loss": [1.2 - 0.2 * e for e in range(epochs)],
            "train_accuracy": [0.6 + 0.08 * e for e in range(epochs)],
            "val_loss": [1.0 - 0.1 * e for e in range(epochs)],
            "val_accuracy": val,
            "wall_seconds": [seconds] * epochs,
            "examples_per_second": [1000.0 / seconds] * epochs,
        }
    )


def write_run(
    root: Path,
    labels: np.ndarray,
    *,
    name: str,
    optimizer: str,
    params: dict,
    learning_rate: float,
    seed: int,
    seconds: float,
    outcome: tuple,
) -> dict:
    """One run folder; returns the run dict that build_report expects."""
    run_hash = f"{name[:4]}{int(learning_rate * 1e4):06d}"
    run_dir = root / f"mlp-{name}-{run_hash}" / f"seed-{seed}"
    run_dir.mkdir(parents=True)
    diverged = outcome[1] == "diverged"
    epochs = 1 if diverged else EPOCHS
    pq.write_table(_metrics(0.5 if diverged else outcome[1], epochs, seconds), run_dir / "metrics.parquet")
    run = {
        "settings": {"optimizer": {"name": optimizer, "learning_rate": learning_rate, "params": params}},
        "run_hash": run_hash,
        "seed": seed,
        "status": "diverged" if diverged else "completed",
        "diverged_at": {"epoch": 2, "step": 37} if diverged else None,
        "epochs_completed": epochs,
        "final_checkpoint": None if diverged else f"checkpoints/epoch-{EPOCHS:04d}",
        "wall_seconds": seconds * epochs + 1.5,
        "examples_per_second": 1000.0 / seconds,
        "versions": {"python": "3.11.2", "tensorflow": "2.21.0", "numpy": "2.4.6"},
        "hardware": {"cpu_model": "Test CPU @ 2.0GHz", "logical_cores": 2},
        "threads": {"intra_op": 2, "inter_op": 1},
        "attempts": 1,
    }
    (run_dir / "run.json").write_text(json.dumps(run))
    evaluation = {
        "schema_version": 1,
        "run_hash": run_hash,
        "seed": seed,
        "status": run["status"],
        "diverged_at": run["diverged_at"],
        "epochs_completed": epochs,
        "checkpoint": run["final_checkpoint"],
        "metrics": summarize_metrics(read_metrics(run_dir / "metrics.parquet")),
        "test": None,
    }
    if not diverged:
        wrong = round((1 - outcome[2]) * len(labels))
        predictions = labels.astype(np.int64).copy()
        predictions[:wrong] = (predictions[:wrong] + 1 + seed) % 10
        evaluation["test"] = score_predictions(labels, predictions, 0.3 + (1 - outcome[2]), max_misclassified=100)
    (run_dir / "evaluation.json").write_text(json.dumps(evaluation))
    return {
        "name": name,
        "optimizer": optimizer,
        "learning_rate": learning_rate,
        "params": params,
        "seed": seed,
        "run_hash": run_hash,
        "run_dir": run_dir,
        "run": run,
        "evaluation": evaluation,
    }


def write_scenario(root: Path, test_arrow: Path, scenario=SCENARIO) -> list[dict]:
    """Every run of `scenario` in config order (entry, learning rate, seed)."""
    _, labels = load_arrays(test_arrow)
    return [
        write_run(
            root,
            labels,
            name=name,
            optimizer=optimizer,
            params=params,
            learning_rate=rate,
            seed=outcome[0],
            seconds=seconds,
            outcome=outcome,
        )
        for name, optimizer, params, seconds, grid in scenario
        for rate, outcomes in grid.items()
        for outcome in outcomes
    ]


def build_kwargs(tmp_path: Path, runs: list[dict], test_arrow: Path, **overrides) -> dict:
    kwargs = {
        "experiment": "unit",
        "title": "Optimizer comparison <unit test>",
        "date": "2024-05-01",
        "config_hash": "c0ffee1234",
        "config_text": "experiment: unit\nseeds: [0, 1]\n# a <tag> & more\n",
        "runs": runs,
        "test_arrow": test_arrow,
    }
    kwargs.update(overrides)
    return kwargs
