"""What a config will cost before it runs: `python -m pipeline.plan --config configs/x.yaml`.

Prints the runs in total, done and to do, and the estimated CPU time of those to do. The training rate
of a run (examples/s) and its fixed cost (TF import, data load, graph build, evaluation) come from the
`run.json` files of earlier runs of the same model and batch size under the artifacts root; without
any, from the rates `benchmarks/train_throughput.py` measured on the 2-core reference machine. Never
imports TensorFlow.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from pathlib import Path

import luigi.configuration

from pipeline.experiment import DEFAULT_CONFIG, load_experiment, read_tuning, tuning_tasks
from pipeline.settings import layout
from pipeline.training import TRAINING_RESOURCE
from tasks.core.config import ExperimentConfig
from tasks.core.errors import PipelineError
from tasks.core.runs import RunSpec, final_specs, grid_specs, tuned_entries

TRAIN_ROWS = 60_000  # the Fashion-MNIST training file, before the validation rows are taken out
# Training examples/s of one SGD run on the 2-core reference machine, alone on a core, measured 2026-11-29
# (benchmarks/full_report.py's rate probe and train_throughput.py), by (model, batch size); the other
# optimizers' step time relative to SGD's, from the same measurements.
REFERENCE_RATES = {("mlp", 64): 158_000.0, ("mlp", 128): 165_000.0, ("cnn_p1", 128): 1_300.0}
SLOWER = {"momentum": 1.04, "adam": 1.2, "msvag": 1.27, "svag": 1.25}  # M-SVAG/SVAG: with the fused kernel
# A run's fixed cost in seconds (graph build, session, data load; TensorFlow already imported by the
# worker, pipeline/warm.py) and, per epoch, its checkpoint and metrics writes; validation is costed from
# the rate (a forward pass is about a third of a training step).
REFERENCE_OVERHEAD_SECONDS = 0.6
EPOCH_WRITE_SECONDS = 0.04
VALIDATION_SPEEDUP = 3.0
EVALUATION_SECONDS = 0.5  # one EvaluateRun: scoring took 0.07-0.19 s, plus its fork and task bookkeeping


def planned_runs(config: ExperimentConfig, config_path: str) -> tuple[list[RunSpec], list[RunSpec]]:
    """(every run the config will train: tuning grids, then final runs; the final runs, to be evaluated)."""
    specs: dict[tuple[str, int], RunSpec] = {}
    for entry in tuned_entries(config):
        for spec in grid_specs(config, entry):
            specs[(spec.run_hash, spec.seed)] = spec
    tasks = [task for task in tuning_tasks(config_path) if task.complete()]
    choices = {name: float(record["chosen_learning_rate"]) for name, record in read_tuning(tasks).items()}
    # A tuned entry not yet tuned: count its first grid point on the remaining seeds (same cost).
    choices.update({e.name: e.learning_rates[0] for e in tuned_entries(config) if e.name not in choices})
    finals = final_specs(config, choices)
    for spec in finals:
        specs.setdefault((spec.run_hash, spec.seed), spec)
    return list(specs.values()), finals


def recorded_rates(runs_root: Path) -> dict[tuple[str, int, str], tuple[float, float]]:
    """(model json, batch, optimizer) → (median examples/s, median fixed seconds) from finished runs."""
    found: dict[tuple[str, int, str], list[tuple[float, float]]] = {}
    for path in runs_root.glob("**/seed-*/run.json"):
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
            settings_ = record["settings"]
            key = (
                json.dumps(settings_["model"], sort_keys=True),
                int(settings_["training"]["batch_size"]),
                str(settings_["optimizer"]["name"]),
            )
            rate = float(record["examples_per_second"])
            fixed = float(record["attempt_wall_seconds"]) - float(record["wall_seconds"])
        except (OSError, ValueError, KeyError, TypeError):
            continue  # an unreadable or foreign record says nothing about speed
        if rate > 0 and record.get("attempts") == 1:
            found.setdefault(key, []).append((rate, max(fixed, 0.0)))
    return {
        key: (statistics.median(r for r, _ in values), statistics.median(f for _, f in values))
        for key, values in found.items()
    }


def estimate_seconds(spec: RunSpec, rates: dict) -> tuple[float, str]:
    settings_ = spec.settings
    model = json.dumps(settings_.model.model_dump(mode="json"), sort_keys=True)
    key = (model, settings_.training.batch_size, settings_.optimizer.name)
    same_model = [value for k, value in rates.items() if k[0] == model and k[1] == settings_.training.batch_size]
    if key in rates:
        rate, fixed = rates[key]
        source = "recorded"
    elif same_model:
        rate = statistics.median(r for r, _ in same_model) / SLOWER.get(settings_.optimizer.name, 1.0)
        fixed, source = statistics.median(f for _, f in same_model), "recorded (other optimizers)"
    elif (settings_.model.name, settings_.training.batch_size) in REFERENCE_RATES:
        rate = REFERENCE_RATES[(settings_.model.name, settings_.training.batch_size)]
        rate /= SLOWER.get(settings_.optimizer.name, 1.0)
        fixed, source = REFERENCE_OVERHEAD_SECONDS, "reference machine"
    else:
        return float("nan"), f"no rate known for {settings_.model.name} at batch {settings_.training.batch_size}"
    validation_rows = 10 * settings_.split.validation_per_class
    train_rows = TRAIN_ROWS - validation_rows
    per_epoch = train_rows / rate + validation_rows / (VALIDATION_SPEEDUP * rate) + EPOCH_WRITE_SECONDS
    return fixed + settings_.training.epochs * per_epoch, source


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipeline.plan", description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=DEFAULT_CONFIG)
    args = parser.parse_args(argv)
    try:
        config = load_experiment(args.config)[0]
        specs, finals = planned_runs(config, args.config)
    except (PipelineError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    paths = layout()
    done = [spec for spec in specs if (paths.run_dir(spec) / "run.json").is_file()]
    to_do = [spec for spec in specs if spec not in done]
    rates = recorded_rates(paths.root / "runs")
    estimates = [estimate_seconds(spec, rates) for spec in to_do]
    unknown = sorted({source for seconds, source in estimates if math.isnan(seconds)})
    if unknown:
        print(f"runs: {len(specs)} total, {len(done)} done, {len(to_do)} to do")
        print(f"estimated CPU time: unknown ({'; '.join(unknown)}): train one short run of it first")
        return 0
    evaluations = sum(not (paths.run_dir(spec) / "evaluation.json").is_file() for spec in finals)
    cpu = sum(seconds for seconds, _ in estimates) + evaluations * EVALUATION_SECONDS
    slots = max(1, luigi.configuration.get_config().getint("resources", TRAINING_RESOURCE, 1))
    sources = sorted({source for _, source in estimates}) or ["nothing to do"]
    print(f"config: {args.config} (experiment {config.experiment})")
    print(f"runs: {len(specs)} total, {len(done)} done, {len(to_do)} to do ({evaluations} evaluations to do)")
    print(f"estimated CPU time: {cpu / 60:.1f} min ({', '.join(sources)})")
    print(f"estimated wall time: {cpu / slots / 60:.1f} min on {slots} training slot(s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
