"""Experiment configs at scheduling time; learning-rate tuning (TuneLearningRate, TunedRuns); TrainExperiment.

A tuned entry's final runs depend on the rate its tuning chose, so they are dynamic dependencies: the
task that needs them yields them from run() once its TuneLearningRate is done. TunedRuns does it per
entry, so one entry's final runs start while others are still tuning, and no training slot waits for
the slowest grid.
"""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path

import luigi

from pipeline.settings import layout
from pipeline.training import evaluate_task, train_task
from tasks.core.config import ExperimentConfig, load_config
from tasks.core.runs import HASH_LENGTH, entry_named, final_specs, grid_specs, tuned_entries
from tasks.core.storage import read_json

DEFAULT_CONFIG = "configs/default.yaml"


@functools.lru_cache(maxsize=32)
def _load(path: str, mtime_ns: int) -> tuple[ExperimentConfig, str]:
    config = load_config(path)
    return config, Path(path).read_text(encoding="utf-8")


def load_experiment(path: str) -> tuple[ExperimentConfig, str]:
    """The validated config and its text, cached per file version (scheduling asks for it often)."""
    config_path = Path(path)
    mtime_ns = config_path.stat().st_mtime_ns if config_path.exists() else -1
    return _load(str(config_path), mtime_ns)


def config_hash(config: ExperimentConfig) -> str:
    return hashlib.sha256(config.model_dump_json().encode("utf-8")).hexdigest()[:HASH_LENGTH]


class TuneLearningRate(luigi.Task):
    """Train one entry's learning-rate grid on the tuning seeds and choose a rate on validation accuracy."""

    config = luigi.Parameter(default=DEFAULT_CONFIG)
    name = luigi.Parameter(description="the tuned optimizer entry")

    @property
    def experiment(self) -> ExperimentConfig:
        return load_experiment(self.config)[0]

    def grid(self):
        config = self.experiment
        return grid_specs(config, entry_named(config, self.name))

    def requires(self):
        return [train_task(spec) for spec in self.grid()]

    def output(self):
        hashes = ",".join(f"{spec.run_hash}:{spec.seed}" for spec in self.grid())
        grid_hash = hashlib.sha256(hashes.encode()).hexdigest()[:HASH_LENGTH]
        return luigi.LocalTarget(str(layout().tuning_record(self.experiment.experiment, self.name, grid_hash)))

    def run(self):
        from tasks.reporting.tuning import choose_learning_rate

        runs = [
            {"learning_rate": spec.learning_rate, "run_hash": spec.run_hash, "seed": spec.seed, "run_dir": task.run_dir}
            for spec, task in zip(self.grid(), self.requires())
        ]
        choose_learning_rate(self.name, self.experiment.tuning_seeds, runs, self.output().path)


class TunedRuns(luigi.Task):
    """One tuned entry's final runs at its chosen rate, trained and evaluated as soon as its own tuning is
    done; nothing of its own is written (complete: the tuning and every one of those evaluations are)."""

    config = luigi.Parameter(default=DEFAULT_CONFIG)
    name = luigi.Parameter(description="the tuned optimizer entry")

    def requires(self):
        return TuneLearningRate(config=self.config, name=self.name)

    def final_tasks(self):
        choices = chosen_rates(read_tuning([self.requires()]))
        return [evaluate_task(spec) for spec in final_specs(load_experiment(self.config)[0], choices, only=self.name)]

    def complete(self):
        return self.requires().complete() and all(task.complete() for task in self.final_tasks())

    def run(self):
        yield self.final_tasks()


def tuning_tasks(config_path: str) -> list[TuneLearningRate]:
    config = load_experiment(config_path)[0]
    return [TuneLearningRate(config=config_path, name=entry.name) for entry in tuned_entries(config)]


def read_tuning(tasks: list[TuneLearningRate]) -> dict[str, dict]:
    """Each tuned entry's tuning record (written by a finished TuneLearningRate)."""
    return {task.name: read_json(task.output().path) for task in tasks}


def chosen_rates(tuning: dict[str, dict]) -> dict[str, float]:
    return {name: float(record["chosen_learning_rate"]) for name, record in tuning.items()}


class TrainExperiment(luigi.Task):
    """Train every final run of a config (after its tuning), without evaluating or reporting."""

    config = luigi.Parameter(default=DEFAULT_CONFIG)

    def requires(self):
        return tuning_tasks(self.config)

    def final_tasks(self):
        choices = chosen_rates(read_tuning(self.requires()))
        return [train_task(spec) for spec in final_specs(load_experiment(self.config)[0], choices)]

    def complete(self):
        return all(task.complete() for task in self.requires()) and all(t.complete() for t in self.final_tasks())

    def run(self):
        yield self.final_tasks()
