"""Experiment configs at scheduling time, and TrainExperiment: train every run of a config."""

from __future__ import annotations

import functools
import json
from pathlib import Path

import luigi

from pipeline.training import TrainRun
from tasks.core.config import ExperimentConfig, expand_runs, load_config, settings_hash

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
    return settings_hash(json.loads(config.model_dump_json()))


class TrainExperiment(luigi.WrapperTask):
    """Train every (optimizer entry × learning rate × seed) run of a config, without evaluating."""

    config = luigi.Parameter(default=DEFAULT_CONFIG)

    def requires(self):
        config = load_experiment(self.config)[0]
        return [TrainRun(name=spec.name, settings=spec.settings, seed=spec.seed) for spec in expand_runs(config)]
