"""What a config will cost before it runs: the runs it will train, those done, and the CPU time still ahead.

The training rate of a run (examples/s) and its fixed cost (graph build, session, data load, writes) come
from the run.json files of earlier runs of the same model and batch size under the artifacts root; without
any, from the rates `benchmarks/train_throughput.py` measured on the 2-core reference machine. A tuned entry
whose tuning has not finished is costed at its first grid point (every point costs the same). With successive
halving (`tuning: {halving}`), an unfinished tuning's grid points are costed at the run-epochs halving will
train on the written grid (`halving_epochs`; extension, which depends on the outcome, is not foreseen); a
finished tuning's runs are the record's grid (extended points included) less the points it stopped early,
which never finish and are never trained further. No TensorFlow.
"""

from __future__ import annotations

import json
import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path

from tasks.core.config import ExperimentConfig
from tasks.core.errors import RunFolderError
from tasks.core.experiment import (
    chosen_rates,
    read_tuning,
    seed_plan_path,
    seed_plan_problem,
    tuning_record_path,
    tuning_record_problem,
)
from tasks.core.layout import Layout
from tasks.core.runfolder import RunFolder
from tasks.core.runs import RunSpec, final_specs, grid_specs, tuned_entries
from tasks.core.storage import read_json
from tasks.data.dataset import RAW_FILES

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
# The training file's rows, before the validation rows are taken out of it.
TRAIN_ROWS = RAW_FILES["train-labels-idx1-ubyte.gz"].rows

RateKey = tuple[str, int, str]  # (model as canonical JSON, batch size, optimizer name)


@dataclass(frozen=True)
class Rate:
    """Training examples/s of one run and its fixed seconds, with where the numbers came from."""

    examples_per_second: float
    fixed_seconds: float
    source: str  # "recorded", "recorded (other optimizers)" or "reference machine"


@dataclass
class Plan:
    """Every run a config will train (tuning grids, then final runs), what is done, and the CPU time ahead."""

    runs: list[RunSpec]
    finals: list[RunSpec]
    # Epochs a run will train when fewer than its settings' (tuning points under successive halving).
    epochs: dict[RunSpec, float] = field(default_factory=dict)
    done: list[RunSpec] = field(default_factory=list)
    evaluations_to_do: int = 0
    cpu_seconds: float = 0.0
    sources: list[str] = field(default_factory=list)
    unknown: list[str] = field(default_factory=list)  # why some run's rate is unknown (then cpu_seconds is NaN)
    # An adaptive comparison whose seed plan is not made yet: the CPU seconds of the runs up to `max` seeds.
    up_to_max_seconds: float | None = None

    @property
    def to_do(self) -> list[RunSpec]:
        return [spec for spec in self.runs if spec not in self.done]

    def wall_seconds(self, slots: int) -> float:
        return self.cpu_seconds / max(1, slots)


def halving_epochs(points: int, rungs: list[int], keep: float, epochs: int) -> float:
    """Mean epochs per grid point (per seed) under successive halving of `points` points: every point to the
    first rung, the best ceil(keep × n) (at least one) on to the next, the last rung's survivors to `epochs`;
    the same cut as tasks.core.selection.halve."""
    alive, total, previous = points, 0, 0
    for rung in rungs:
        total += alive * (rung - previous)
        alive, previous = max(1, math.ceil(keep * alive - 1e-9)), rung
    return (total + alive * (epochs - previous)) / points


def planned_runs(
    config: ExperimentConfig, layout: Layout, seed_counts: dict[str, int] | None = None
) -> tuple[list[RunSpec], list[RunSpec], dict[RunSpec, float]]:
    """(every run the config will train: tuning grids, then final runs; the final runs, to be evaluated;
    epochs of the runs that train fewer than their settings say: unfinished halving tunings' points).

    An adaptive comparison's final runs are those of its seed plan once it is made, else its pilot seeds;
    `seed_counts` overrides both (the cost model asks what `max` seeds would cost)."""
    tuned = [
        (entry.name, tuning_record_path(layout, config, entry.name))
        for entry in tuned_entries(config)
        if tuning_record_problem(tuning_record_path(layout, config, entry.name), config, entry.name) is None
    ]
    records = read_tuning(tuned, config)
    halving = config.tuning.halving if config.tuning else None
    specs: dict[tuple[str, int], RunSpec] = {}
    epochs: dict[RunSpec, float] = {}
    for entry in tuned_entries(config):
        record = records.get(entry.name)
        if record is not None and config.tuning is not None:
            # The record's grid, extended points included; points stopped at a rung are as far as they go.
            rates = [float(p["learning_rate"]) for p in record["grid"] if p.get("stopped_at_epoch") is None]
            grid = grid_specs(config, entry, rates)
        else:
            grid = grid_specs(config, entry)
        if record is None and halving is not None:
            share = halving_epochs(len(entry.learning_rates), halving.rungs, halving.keep, config.training.epochs)
            epochs.update({spec: share for spec in grid})
        for spec in grid:
            specs[(spec.run_hash, spec.seed)] = spec
    choices = chosen_rates(records)
    choices.update({e.name: e.learning_rates[0] for e in tuned_entries(config) if e.name not in choices})
    if seed_counts is None and config.adaptive is not None:
        path = seed_plan_path(layout, config)
        seed_counts = read_json(path)["seeds"] if seed_plan_problem(path, config) is None else None
    finals = final_specs(config, choices, seed_counts=seed_counts)
    for spec in finals:
        if (spec.run_hash, spec.seed) in specs:
            epochs.pop(specs[(spec.run_hash, spec.seed)], None)  # a final run trains all epochs
        specs.setdefault((spec.run_hash, spec.seed), spec)
    return list(specs.values()), finals, epochs


def _model_key(spec: RunSpec) -> str:
    return json.dumps(spec.settings.model.model_dump(mode="json"), sort_keys=True)


def recorded_rates(runs_root: Path) -> dict[RateKey, tuple[float, float]]:
    """(model, batch, optimizer) → (median examples/s, median fixed seconds) over finished single-attempt runs."""
    found: dict[RateKey, list[tuple[float, float]]] = {}
    for path in Path(runs_root).glob("**/seed-*/run.json"):
        try:
            record = RunFolder.found_at(path.parent).record()
            settings = record.data["settings"]
            key = (
                json.dumps(settings["model"], sort_keys=True),
                int(settings["training"]["batch_size"]),
                str(settings["optimizer"]["name"]),
            )
            rate = float(record.data["examples_per_second"])
            fixed = float(record.data["attempt_wall_seconds"]) - float(record.data["wall_seconds"])
        except (RunFolderError, ValueError, KeyError, TypeError):
            continue  # an unfinished or unreadable record says nothing about speed
        if rate > 0 and record.data.get("attempts") == 1:
            found.setdefault(key, []).append((rate, max(fixed, 0.0)))
    return {
        key: (statistics.median(r for r, _ in values), statistics.median(f for _, f in values))
        for key, values in found.items()
    }


def rate_for(spec: RunSpec, rates: dict[RateKey, tuple[float, float]]) -> Rate | None:
    """The rate a run will train at: recorded for its optimizer, else for its model's other optimizers scaled by
    SLOWER, else the reference machine's; None when none is known."""
    settings = spec.settings
    model, batch, optimizer = _model_key(spec), settings.training.batch_size, settings.optimizer.name
    if (model, batch, optimizer) in rates:
        return Rate(*rates[(model, batch, optimizer)], "recorded")
    same_model = [value for key, value in rates.items() if key[:2] == (model, batch)]
    if same_model:
        rate = statistics.median(r for r, _ in same_model) / SLOWER.get(optimizer, 1.0)
        return Rate(rate, statistics.median(f for _, f in same_model), "recorded (other optimizers)")
    if (settings.model.name, batch) in REFERENCE_RATES:
        rate = REFERENCE_RATES[(settings.model.name, batch)] / SLOWER.get(optimizer, 1.0)
        return Rate(rate, REFERENCE_OVERHEAD_SECONDS, "reference machine")
    return None


def run_seconds(spec: RunSpec, rate: Rate, epochs: float | None = None) -> float:
    """CPU seconds of one run at `rate`: its fixed cost plus, per epoch, training, validation and the writes;
    over `epochs` epochs where given (default: its settings')."""
    settings = spec.settings
    validation_rows = 10 * settings.split.validation_per_class
    train_rows = TRAIN_ROWS - validation_rows
    speed = rate.examples_per_second
    # In steps, so that a step budget (whose last epoch may be partial) is costed as it trains; `epochs`
    # (halving's expected epochs of a grid point, epoch budgets only) overrides the budget.
    steps_per_epoch = max(1, train_rows // settings.training.batch_size)
    steps, whole = settings.training.total_steps(steps_per_epoch), settings.training.total_epochs(steps_per_epoch)
    if epochs is not None:
        steps, whole = epochs * steps_per_epoch, epochs
    per_epoch = validation_rows / (VALIDATION_SPEEDUP * speed) + EPOCH_WRITE_SECONDS
    return rate.fixed_seconds + steps * settings.training.batch_size / speed + whole * per_epoch


def plan(config: ExperimentConfig, layout: Layout) -> Plan:
    """The runs of `config`, which are done (by the one definition: their RunFolder is finished), and the cost;
    for an adaptive comparison without its seed plan yet, also the cost if every entry went to `max` seeds."""
    result = _costed(config, layout, *planned_runs(config, layout))
    if config.adaptive is not None and seed_plan_problem(seed_plan_path(layout, config), config) is not None:
        at_max = {entry.name: config.adaptive.max for entry in config.optimizers}
        result.up_to_max_seconds = _costed(config, layout, *planned_runs(config, layout, at_max)).cpu_seconds
    return result


def _costed(config: ExperimentConfig, layout: Layout, runs: list[RunSpec], finals: list[RunSpec], epochs: dict) -> Plan:
    result = Plan(runs, finals, epochs)
    folders = {spec: RunFolder(layout.run_dir(spec), spec.run_hash, spec.seed) for spec in runs}
    result.done = [spec for spec in runs if folders[spec].finished]
    result.evaluations_to_do = sum(not folders[spec].evaluated for spec in finals)
    rates = recorded_rates(layout.root / "runs")
    costs = []
    for spec in result.to_do:
        rate = rate_for(spec, rates)
        if rate is None:
            name, batch = spec.settings.model.name, spec.settings.training.batch_size
            result.unknown.append(f"no rate known for {name} at batch {batch}")
        else:
            costs.append(run_seconds(spec, rate, result.epochs.get(spec)))
            result.sources.append(rate.source)
    result.unknown, result.sources = sorted(set(result.unknown)), sorted(set(result.sources))
    cpu = sum(costs) + result.evaluations_to_do * EVALUATION_SECONDS
    result.cpu_seconds = math.nan if result.unknown else cpu
    return result
