"""Fake but self-consistent run folders for report tests: no TensorFlow, no training.

Each run gets a metrics.parquet, a run.json and an evaluation.json whose test scores come from real
predictions on a tiny synthetic test set, passed through the same scoring code evaluate_run uses.
"""

from __future__ import annotations

import hashlib
import json
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import scipy.stats

from tasks.core.config import ModelConfig, SplitConfig, TrainingConfig
from tasks.core.runfolder import EVALUATION_SCHEMA_VERSION, PREDICTIONS_PARQUET, RunFolder
from tasks.core.runs import RUN_SCHEMA_VERSION, OptimizerSettings, RunOnDisk, RunSettings, RunSpec
from tasks.core.runtables import encode_predictions
from tasks.data.arrays import load_arrays, write_arrays
from tasks.evaluation.evaluate import score_predictions, summarize_metrics
from tasks.reporting import statistics
from tasks.reporting.comparison import summary_targets
from tasks.reporting.report import ReportInputs
from tasks.reporting.targets import summarize
from tests.synthetic import make_images_labels

TEST_ROWS = 2000  # accuracies below are multiples of 1/200 (and so of 1/2000)
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


# Five seeds, for the statistics: adam (tuned, see STATS_TUNING) beats momentum and sgd on every seed; sgd
# and momentum are indistinguishable; sgd diverged on seed 4. Final validation accuracies put adam past
# 0.88 at epoch 2 (the fixture's curve peaks there at final + 0.01), the others past 0.85 only.
STATS_OUTCOMES = {  # entry: (seconds per epoch, learning rate, [(final val, test) or "diverged"] for seeds 0-4)
    "adam": (3.0, 0.001, [(0.88, 0.88), (0.875, 0.885), (0.88, 0.875), (0.885, 0.89), (0.88, 0.88)]),
    "momentum": (2.5, 0.01, [(0.85, 0.86), (0.85, 0.86), (0.845, 0.855), (0.85, 0.875), (0.84, 0.86)]),
    "sgd": (2.0, 0.1, [(0.845, 0.86), (0.85, 0.865), (0.84, 0.85), (0.85, 0.87), "diverged"]),
}
STATS_SCENARIO = [
    (name, name, {}, seconds, {rate: [(seed, *o) if o != "diverged" else (seed, o) for seed, o in enumerate(runs)]})
    for name, (seconds, rate, runs) in STATS_OUTCOMES.items()
]
STATS_TUNING = {
    "adam": {
        "tuning_seeds": [0, 1],
        "grid": [
            dict(zip(("learning_rate", "run_hash", "val_accuracies", "mean_val_accuracy", "std_val_accuracy"), point))
            for point in (
                (0.0003, "t1", [0.86, 0.87], 0.865, 0.00707),
                (0.001, "t2", [0.88, 0.885], 0.8825, 0.00354),
                (0.01, "t3", [0.85, None], 0.85, None),  # one tuning seed diverged
            )
        ],
        "chosen_learning_rate": 0.001,
        "rule": "the highest mean final validation accuracy over tuning seeds 0 and 1",
    }
}


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
    """One run folder (its checkpoint files empty stand-ins); returns what was written, with the RunSpec."""
    settings = RunSettings(
        schema_version=RUN_SCHEMA_VERSION,
        model=ModelConfig(name="mlp", params={"hidden": [128, 128]}),
        training=TrainingConfig(epochs=EPOCHS, batch_size=64),
        split=SplitConfig(),
        optimizer=OptimizerSettings(name=optimizer, learning_rate=learning_rate, params=params),
    )
    spec = RunSpec(name, settings, seed)
    run_hash = spec.run_hash
    run_dir = root / spec.relative_dir
    run_dir.mkdir(parents=True)
    diverged = outcome[1] == "diverged"
    epochs = 1 if diverged else EPOCHS
    pq.write_table(_metrics(0.5 if diverged else outcome[1], epochs, seconds), run_dir / "metrics.parquet")
    if not diverged:
        (run_dir / "checkpoints").mkdir()
        for suffix in (".index", ".data-00000-of-00001"):
            (run_dir / "checkpoints" / f"epoch-{EPOCHS:04d}{suffix}").write_bytes(b"")
    run = {
        "settings": settings.as_dict(),
        "run_hash": run_hash,
        "seed": seed,
        "status": "diverged" if diverged else "completed",
        "diverged_at": {"epoch": 2, "step": 37} if diverged else None,
        "epochs_completed": epochs,
        "final_checkpoint": None if diverged else f"checkpoints/epoch-{EPOCHS:04d}",
        "weights_sha256": None if diverged else "0" * 64,
        "wall_seconds": seconds * epochs + 1.5,
        "examples_per_second": 1000.0 / seconds,
        "versions": {"python": "3.11.2", "tensorflow": "2.21.0", "numpy": "2.4.6"},
        "hardware": {"cpu_model": "Test CPU @ 2.0GHz", "logical_cores": 2},
        "threads": {"intra_op": 2, "inter_op": 1},
        "attempts": 1,
    }
    (run_dir / "run.json").write_text(json.dumps(run))
    evaluation = {
        "schema_version": EVALUATION_SCHEMA_VERSION,
        "run_hash": run_hash,
        "seed": seed,
        "status": run["status"],
        "diverged_at": run["diverged_at"],
        "epochs_completed": epochs,
        "checkpoint": run["final_checkpoint"],
        "metrics": summarize_metrics(RunFolder(run_dir, run_hash, seed).metrics()),
        "test": None,
    }
    if not diverged:
        wrong = round((1 - outcome[2]) * len(labels))
        predictions = labels.astype(np.int64).copy()
        predictions[:wrong] = (predictions[:wrong] + 1 + seed) % 10
        evaluation["test"] = score_predictions(labels, predictions, 0.3 + (1 - outcome[2]), max_misclassified=100)
        encoded = encode_predictions(predictions)
        (run_dir / PREDICTIONS_PARQUET).write_bytes(encoded)
        evaluation["predictions"] = {
            "file": PREDICTIONS_PARQUET,
            "rows": len(predictions),
            "sha256": hashlib.sha256(encoded).hexdigest(),
        }
    (run_dir / "evaluation.json").write_text(json.dumps(evaluation))
    return {
        "spec": spec,
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
    """build_report's arguments for the runs written by write_run, with `overrides` of ReportInputs' fields."""
    kwargs = {
        "experiment": "unit",
        "title": "Optimizer comparison <unit test>",
        "date": "2024-05-01",
        "config_hash": "c0ffee1234",
        "config_text": "experiment: unit\nseeds: [0, 1]\n# a <tag> & more\n",
        "runs": [RunOnDisk(run["spec"], RunFolder(run["run_dir"], run["run_hash"], run["seed"])) for run in runs],
        "test_arrow": test_arrow,
    }
    kwargs.update(overrides)
    return {"inputs": ReportInputs(**kwargs)}


class TableParser(HTMLParser):
    """Collects every <table id=...> as rows of (attributes, text) cells, and the order of tags seen."""

    def __init__(self):
        super().__init__()
        self.tables: dict[str, list[list[tuple[dict, str]]]] = {}
        self.images: list[str] = []
        self._table = None
        self._cell = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "table":
            self._table = self.tables.setdefault(attrs.get("id", f"table-{len(self.tables)}"), [])
        elif tag == "tr" and self._table is not None:
            self._table.append([])
        elif tag in ("td", "th") and self._table is not None:
            self._cell = (attrs, [])
        elif tag == "img":
            self.images.append(attrs["src"])

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self._table[-1].append((self._cell[0], " ".join("".join(self._cell[1]).split())))
            self._cell = None
        elif tag == "table":
            self._table = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell[1].append(data)


def run_correctness(runs: list[dict], test_arrow: Path, rows: list[dict]) -> dict:
    """(entry, seed) → 0/1 per test image of every chosen completed row, from the runs' predictions.parquet."""
    _, labels = load_arrays(test_arrow)
    by_key = {(run["name"], run["seed"], run["run_hash"]): run for run in runs}
    vectors = {}
    for row in rows:
        if row["chosen"] and row["status"] == "completed":
            run = by_key[row["name"], row["seed"], row["run_hash"]]
            vectors[row["name"], row["seed"]] = (
                RunFolder(run["run_dir"], run["run_hash"], run["seed"]).predictions() == labels
            )
    return vectors


def _two_way_interval(matrix: np.ndarray, confidence: float) -> tuple[float, float]:
    """A seeds × images interval recomputed by hand: ANOVA sums of squares, Satterthwaite, the combined df."""
    n, images = matrix.shape
    grand = matrix.mean()
    ss_seeds = images * ((matrix.mean(axis=1) - grand) ** 2).sum()
    ss_images = n * ((matrix.mean(axis=0) - grand) ** 2).sum()
    ss_residual = ((matrix - grand) ** 2).sum() - ss_seeds - ss_images
    ms = (ss_seeds / (n - 1), ss_images / (images - 1), max(ss_residual, 0.0) / ((n - 1) * (images - 1)))
    if ms[1] <= ms[2]:
        variance, df = ms[0] / (n * images), n - 1
    else:
        variance = (ms[0] + ms[1] - ms[2]) / (n * images)
        dfs = (n - 1, images - 1, (n - 1) * (images - 1))
        satterthwaite = (ms[0] + ms[1] - ms[2]) ** 2 / sum(m**2 / d for m, d in zip(ms, dfs))
        df = np.sqrt((n - 1) * satterthwaite)
    half = scipy.stats.t.ppf((1 + confidence) / 2, df) * np.sqrt(variance)
    return grand - half, grand + half


def assert_recomputable_from_summary(out: dict, runs: list[dict], test_arrow: Path, **statistics_inputs) -> None:
    """build_report's statistics and times to target equal a recomputation from summary.parquet and the runs'
    predictions.parquet alone.

    `statistics_inputs` are what compute needs beyond them (the split flag, a seed plan); the margin is read
    back from the report. Then, independently of the report's code: the means, the Bonferroni adjustment, the
    simultaneous intervals over seeds × test images (sums of squares by hand, scipy.stats.t.ppf), and every
    run's time to target read straight from its metrics.parquet.
    """
    reported = json.loads(json.dumps({key: out[key] for key in ("statistics", "time_to_target")}, allow_nan=False))
    table = pq.read_table(out["summary"])
    rows = table.to_pylist()
    margin = reported["statistics"]["equivalence_margin"]
    correctness = run_correctness(runs, test_arrow, rows)
    computed = statistics.compute(rows, margin=margin, correctness=correctness, **statistics_inputs)
    assert computed == reported["statistics"]
    assert summarize(rows, summary_targets(table.schema)) == reported["time_to_target"]
    chosen = [row for row in rows if row["chosen"] and row["status"] == "completed"]
    scores = {
        name: {r["seed"]: r["test_accuracy"] for r in chosen if r["name"] == name} for name in {r["name"] for r in rows}
    }
    for name, result in reported["statistics"]["optimizers"].items():
        assert result["mean"] == pytest.approx(np.mean(list(scores[name].values())), abs=1e-15)
    tested = [p for p in reported["statistics"]["pairs"] if p["p_value"] is not None]
    for pair in tested:
        seeds = sorted(set(scores[pair["a"]]) & set(scores[pair["b"]]))
        assert pair["p_value_bonferroni"] == pytest.approx(min(1.0, len(tested) * pair["p_value"]), rel=1e-12)
        matrix = np.stack([correctness[pair["a"], seed].astype(float) - correctness[pair["b"], seed] for seed in seeds])
        expected = _two_way_interval(matrix, 1 - 0.05 / len(tested))
        assert (pair["simultaneous_ci_low"], pair["simultaneous_ci_high"]) == pytest.approx(expected, rel=1e-9)
    for row, run in zip(rows, runs):
        metrics = pq.read_table(run["run_dir"] / "metrics.parquet").to_pydict()
        for target in summary_targets(table.schema):
            reached = [i for i, value in enumerate(metrics["val_accuracy"]) if value >= target]
            first = reached[0] if reached else None
            expected = (
                (None, None) if first is None else (metrics["epoch"][first], sum(metrics["wall_seconds"][: first + 1]))
            )
            tag = f"{100 * target:g}"
            assert (row[f"epochs_to_val_{tag}"], row[f"seconds_to_val_{tag}"]) == expected
