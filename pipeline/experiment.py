"""Learning-rate tuning in the DAG (TuneLearningRate, TunedRuns) and TrainExperiment.

A tuned entry's final runs depend on the rate its tuning chose, so they are dynamic dependencies: the
task that needs them yields them from run() once its TuneLearningRate is done. TunedRuns does it per
entry, so one entry's final runs start while others are still tuning, and no training slot waits for
the slowest grid.
"""

from __future__ import annotations

import luigi

from pipeline.site import layout
from pipeline.training import TrainToEpoch, collect_runs, evaluate_task, train_task
from tasks.core.config import ExperimentConfig
from tasks.core.experiment import (
    DEFAULT_CONFIG,
    chosen_rates,
    config_hash,
    load_experiment,
    read_tuning,
    seed_plan_path,
    seed_plan_problem,
    tuning_record_path,
    tuning_record_problem,
)
from tasks.core.quarantine import quarantine
from tasks.core.runs import entry_named, final_specs, grid_specs, tuned_entries
from tasks.core.storage import read_json, write_json_atomic


class TuneLearningRate(luigi.Task):
    """Train one entry's learning-rate grid on the tuning seeds and choose a rate on validation accuracy.

    The search (tasks.training.tuning.tune: successive halving, then edge extension) yields its training as
    dynamic dependencies, step by step; a rerun replays the finished steps from the run folders and resumes.
    Done when its record stands: a record that does not cover its grid, or whose choice the selection rule
    would not make (edited by hand, or damaged), is moved to quarantine and the choice is made again.
    """

    config = luigi.Parameter(default=DEFAULT_CONFIG)
    name = luigi.Parameter(description="the tuned optimizer entry")

    @property
    def experiment(self) -> ExperimentConfig:
        return load_experiment(self.config)[0]

    def grid(self):
        config = self.experiment
        return grid_specs(config, entry_named(config, self.name))

    def requires(self):
        # The written grid's first step; later steps (rungs, the full runs, extensions) come from run().
        config = self.experiment
        halving = config.tuning.halving if config.tuning else None
        first = halving.rungs[0] if halving else None
        return [train_task(spec) if first is None else TrainToEpoch.of(spec, until_epoch=first) for spec in self.grid()]

    def output(self):
        return luigi.LocalTarget(str(tuning_record_path(layout(), self.experiment, self.name)))

    def complete(self):
        return tuning_record_problem(self.path, self.experiment, self.name) is None

    @property
    def path(self):
        return tuning_record_path(layout(), self.experiment, self.name)

    def run(self):
        from tasks.training.tuning import tune, write_tuning_record

        config = self.experiment
        steps = tune(config, entry_named(config, self.name), lambda spec: train_task(spec).folder)
        try:
            request = next(steps)
            while True:
                specs, epoch = request
                yield [
                    train_task(spec) if epoch is None else TrainToEpoch.of(spec, until_epoch=epoch) for spec in specs
                ]
                request = steps.send(None)
        except StopIteration as done:
            record = done.value
        if self.path.exists():
            problem = tuning_record_problem(self.path, config, self.name)
            quarantine(self.path, f"{problem}; the grid's choice was made again")
        write_tuning_record(record, self.path)


class TunedRuns(luigi.Task):
    """One tuned entry's final runs at its chosen rate, trained and evaluated as soon as its own tuning is
    done; nothing of its own is written (complete: the tuning and every one of those evaluations are)."""

    config = luigi.Parameter(default=DEFAULT_CONFIG)
    name = luigi.Parameter(description="the tuned optimizer entry")

    def requires(self):
        return TuneLearningRate(config=self.config, name=self.name)

    def final_tasks(self):
        choices = chosen_rates(tuning_of([self.requires()]))
        return [evaluate_task(spec) for spec in final_specs(load_experiment(self.config)[0], choices, only=self.name)]

    def complete(self):
        return self.requires().complete() and all(task.complete() for task in self.final_tasks())

    def run(self):
        yield self.final_tasks()


def tuning_tasks(config_path: str) -> list[TuneLearningRate]:
    config = load_experiment(config_path)[0]
    return [TuneLearningRate(config=config_path, name=entry.name) for entry in tuned_entries(config)]


def tuning_of(tasks: list[TuneLearningRate]) -> dict[str, dict]:
    """Each tuned entry's tuning record (written by a finished TuneLearningRate), checked."""
    if not tasks:
        return {}
    return read_tuning([(task.name, task.path) for task in tasks], tasks[0].experiment)


class PlanSeeds(luigi.Task):
    """An adaptive comparison's seed plan (`seeds: {pilot, max}`): train and score every final run on the pilot
    seeds (after tuning), then decide from the pilot's variance alone how many seeds each entry gets
    (tasks.reporting.seedplan). Deterministic from the pilot, so a kill and a rerun give the same plan."""

    config = luigi.Parameter(default=DEFAULT_CONFIG)

    @property
    def experiment(self) -> ExperimentConfig:
        return load_experiment(self.config)[0]

    @property
    def path(self):
        return seed_plan_path(layout(), self.experiment)

    def requires(self):
        return tuning_tasks(self.config)

    def output(self):
        return luigi.LocalTarget(str(self.path))

    def complete(self):
        return seed_plan_problem(self.path, self.experiment) is None

    def pilot_tasks(self):
        return [evaluate_task(spec) for spec in final_specs(self.experiment, chosen_rates(tuning_of(self.requires())))]

    def run(self):
        from tasks.reporting.report import plan_seeds

        config, pilots = self.experiment, self.pilot_tasks()
        yield pilots
        if self.path.exists():
            quarantine(self.path, f"{seed_plan_problem(self.path, config)}; the plan was made again")
        plan = plan_seeds(
            collect_runs(pilots), layout().test_arrow, margin=config.equivalence_margin, max_seeds=config.adaptive.max
        )
        pilot = config.adaptive.pilot
        seeds = {
            entry.name: max(pilot, plan["optimizers"].get(entry.name, {}).get("seeds", pilot))
            for entry in config.optimizers
        }
        record = {"experiment": config.experiment, "config_hash": config_hash(config), "seeds": seeds, "plan": plan}
        write_json_atomic(self.path, record)


def seed_plan_of(task: PlanSeeds | None) -> dict | None:
    """The seed plan a finished PlanSeeds wrote (None: the config's seeds are a fixed list)."""
    return read_json(task.path) if task is not None else None


def plan_task(config_path: str) -> PlanSeeds | None:
    """The PlanSeeds of an adaptive config; None for a fixed list of seeds."""
    return PlanSeeds(config=config_path) if load_experiment(config_path)[0].adaptive else None


class TrainExperiment(luigi.Task):
    """Train every final run of a config (after its tuning, and for adaptive seeds its pilot and seed plan),
    without evaluating or reporting the final runs."""

    config = luigi.Parameter(default=DEFAULT_CONFIG)

    def requires(self):
        planned = plan_task(self.config)
        return tuning_tasks(self.config) + ([planned] if planned else [])

    def final_tasks(self):
        config = load_experiment(self.config)[0]
        choices = chosen_rates(tuning_of(tuning_tasks(self.config)))
        plan = seed_plan_of(plan_task(self.config))
        counts = plan["seeds"] if plan else None
        return [train_task(spec) for spec in final_specs(config, choices, seed_counts=counts)]

    def complete(self):
        return all(task.complete() for task in self.requires()) and all(t.complete() for t in self.final_tasks())

    def run(self):
        yield self.final_tasks()
