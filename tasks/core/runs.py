"""Run identity: the typed settings that define one run's result, their hash, and the runs a config asks for.

A run is (optimizer entry name, settings, seed). `RunSettings` is validated once, when it is built from a
config or parsed from a task parameter, and is frozen after that. Its 10-character `run_hash` names the
run's folder, so editing one optimizer's learning rate reruns that optimizer alone.

Learning-rate tuning: an entry whose `learning_rate` is a list is a grid. With `tuning_seeds` in the
config, the grid runs on those seeds only, one point is chosen on validation accuracy, and only the chosen
point runs on every seed (`final_specs`). Without `tuning_seeds`, every grid point runs on every seed.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

from pydantic import Field, field_validator, model_validator

from tasks.core.config import (
    MAX_SEED,
    ExperimentConfig,
    LearningRate,
    ModelConfig,
    OptimizerEntry,
    SplitConfig,
    TrainingConfig,
    check_seed,
    known_params,
)
from tasks.core.errors import ConfigError
from tasks.core.registry import optimizer_kind
from tasks.core.runfolder import RunFolder
from tasks.core.schedule import ScheduleConfig
from tasks.core.schema import _Strict, plain
from tasks.core.selection import reachable_rates

# Bump when the training code changes what a given config produces, so that old runs are not reused.
RUN_SCHEMA_VERSION = 2
HASH_LENGTH = 10


class PluginIdentity(_Strict):
    """What identifies a plugin optimizer's code: its distribution, version and source files' sha256."""

    distribution: str
    version: str
    source_sha256: str

    def as_dict(self) -> dict[str, str]:
        return self.model_dump(mode="json")


class OptimizerSettings(_Strict):
    """The optimizer of a run. `plugin` is None for a built-in, and then left out of the hash and run.json, so
    built-in runs keep the hashes they had before plugins existed; so is a constant `schedule`. For a plugin,
    `plugin` is filled from the installed plugin when not given; given (parsed from a task parameter or
    run.json), it is what the run was planned with."""

    name: str
    learning_rate: LearningRate
    params: dict[str, Any] = Field(default_factory=dict)
    plugin: PluginIdentity | None = None
    schedule: ScheduleConfig = Field(default_factory=ScheduleConfig)

    @model_validator(mode="after")
    def _known(self) -> OptimizerSettings:
        kind = optimizer_kind(self.name)  # ValueError: unknown, clashing or broken
        object.__setattr__(self, "params", known_params("optimizer", self.name, self.params, {self.name: kind.params}))
        if kind.builtin and self.plugin is not None:
            raise ValueError(f"plugin: {self.name!r} is a built-in optimizer, found plugin identity {self.plugin}")
        if not kind.builtin and self.plugin is None:
            object.__setattr__(self, "plugin", PluginIdentity(**kind.identity))
        return self


class RunSettings(_Strict):
    """Everything that defines one run's result except the seed: model, budget, split and optimizer."""

    schema_version: int
    model: ModelConfig
    training: TrainingConfig
    split: SplitConfig
    optimizer: OptimizerSettings

    @field_validator("schema_version")
    @classmethod
    def _current(cls, value: int) -> int:
        if value != RUN_SCHEMA_VERSION:
            raise ValueError(f"expected {RUN_SCHEMA_VERSION}, found {value}: settings of other training code")
        return value

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON data (what run.json records and the hash covers); a built-in optimizer has no `plugin` key."""
        data = self.model_dump(mode="json")
        data["training"] = self.training.identity()  # an epoch budget hashes as before `steps` existed
        if data["optimizer"]["plugin"] is None:
            del data["optimizer"]["plugin"]
        if self.optimizer.schedule.is_constant:  # a constant rate hashes as before schedules existed
            del data["optimizer"]["schedule"]
        else:
            data["optimizer"]["schedule"] = self.optimizer.schedule.identity()
        return data

    def canonical_json(self) -> str:
        return json.dumps(self.as_dict(), sort_keys=True, separators=(",", ":"), allow_nan=False)

    @property
    def run_hash(self) -> str:
        return hashlib.sha256(self.canonical_json().encode("utf-8")).hexdigest()[:HASH_LENGTH]

    def __hash__(self) -> int:  # frozen, but holds dicts: hash the canonical form
        return hash(self.canonical_json())

    _parse_hint = "build them from an experiment config (tasks.core.runs.run_settings) rather than by hand"


def settings_hash(settings: Mapping[str, Any] | RunSettings) -> str:
    """The run hash of settings given as a RunSettings or as its plain-JSON form."""
    if isinstance(settings, RunSettings):
        return settings.run_hash
    canonical = json.dumps(plain(settings), sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:HASH_LENGTH]


@dataclass(frozen=True)
class RunSpec:
    """One training run: the entry's name, the settings that define its result, and the seed."""

    name: str
    settings: RunSettings
    seed: int

    def __post_init__(self) -> None:
        check_seed(self.seed)  # ValueError

    @property
    def run_hash(self) -> str:
        return self.settings.run_hash

    @property
    def learning_rate(self) -> float:
        return self.settings.optimizer.learning_rate

    @property
    def split_seed(self) -> int:
        """The seed of this run's validation split (tasks.core.config.SplitConfig)."""
        return self.settings.split.seed_for(self.seed)

    @property
    def dir_name(self) -> str:
        return f"{self.settings.model.name}-{self.name}-{self.run_hash}"

    @property
    def relative_dir(self) -> str:
        return f"{self.dir_name}/seed-{self.seed}"


class RunOnDisk(NamedTuple):
    """A run and the folder that holds it: what the report and the nightly history read."""

    spec: RunSpec
    folder: RunFolder


def run_settings(config: ExperimentConfig, entry: OptimizerEntry, learning_rate: float) -> RunSettings:
    """The settings of one grid point, every default resolved."""
    return RunSettings(
        schema_version=RUN_SCHEMA_VERSION,
        model=config.model,
        training=config.training,
        split=config.split,
        optimizer=OptimizerSettings(
            name=entry.optimizer, learning_rate=learning_rate, params=dict(entry.params), schedule=entry.schedule
        ),
    )


def seeds_for(config: ExperimentConfig, date: dt.date | None = None) -> list[int]:
    """The config's seeds (an adaptive comparison's pilot seeds), or, for nightly runs under the 'date' policy,
    as many seeds derived from the date."""
    seeds = config.first_seeds
    if date is None or config.nightly.seed_policy == "fixed":
        return seeds
    base = int(hashlib.sha256(date.isoformat().encode()).hexdigest()[:7], 16)
    return [(base + index) % MAX_SEED for index in range(len(seeds))]


def is_tuned(config: ExperimentConfig, entry: OptimizerEntry) -> bool:
    """Whether the entry's grid is tuned on the tuning seeds first (else every point runs on every seed)."""
    return config.tuning_seeds is not None and len(entry.learning_rates) > 1


def tuned_entries(config: ExperimentConfig) -> list[OptimizerEntry]:
    return [entry for entry in config.optimizers if is_tuned(config, entry)]


def entry_named(config: ExperimentConfig, name: str) -> OptimizerEntry:
    for entry in config.optimizers:
        if entry.name == name:
            return entry
    raise ConfigError(
        f"optimizer entry {name!r} is not in experiment {config.experiment!r}; "
        f"its entries are: {', '.join(entry.name for entry in config.optimizers)}"
    )


def grid_specs(config: ExperimentConfig, entry: OptimizerEntry, rates: list[float] | None = None) -> list[RunSpec]:
    """The tuning runs of a tuned entry: every grid point (`rates`; default its written grid) on every tuning seed."""
    seeds = config.tuning_seeds or []
    rates = entry.learning_rates if rates is None else rates
    return [RunSpec(entry.name, run_settings(config, entry, rate), seed) for rate in rates for seed in seeds]


def tunable_rates(config: ExperimentConfig, entry: OptimizerEntry) -> list[float]:
    """The rates a tuning of `entry` may choose: its grid, and the points edge extension may add."""
    cap = config.tuning.extend if config.tuning else 0
    return entry.learning_rates + reachable_rates(entry.learning_rates, cap)


def final_specs(
    config: ExperimentConfig,
    choices: Mapping[str, float] | None = None,
    date: dt.date | None = None,
    only: str | None = None,
    seed_counts: Mapping[str, int] | None = None,
) -> list[RunSpec]:
    """The runs the report compares: tuned entries at their chosen rate, the others at every grid point.

    `choices` maps each tuned entry's name to its chosen learning rate; without it, only untuned entries
    are returned (what can be scheduled before tuning has finished). `only`: the runs of that entry alone
    (then `choices` needs only its rate). `seed_counts`: an adaptive comparison's seeds 0..n-1 per entry
    (its seed plan); without it, the config's seeds (the pilot seeds of an adaptive one).
    """
    specs = []
    for entry in config.optimizers:
        if only is not None and entry.name != only:
            continue
        if is_tuned(config, entry):
            if choices is None:
                continue
            if choices.get(entry.name) not in tunable_rates(config, entry):
                raise ConfigError(
                    f"tuning of {entry.name!r} chose {choices.get(entry.name)!r}, which is not in its grid "
                    f"{entry.learning_rates} or its extensions; the tuning record is stale: rerun the command"
                )
            rates = [choices[entry.name]]
        else:
            rates = entry.learning_rates
        seeds = list(range(seed_counts[entry.name])) if seed_counts is not None else seeds_for(config, date)
        specs += [RunSpec(entry.name, run_settings(config, entry, rate), seed) for rate in rates for seed in seeds]
    return specs


def expand_runs(config: ExperimentConfig, date: dt.date | None = None) -> list[RunSpec]:
    """Every (entry × learning rate × seed) of a config without tuning, in config order."""
    if tuned_entries(config):
        raise ConfigError(
            f"experiment {config.experiment!r} tunes {[e.name for e in tuned_entries(config)]} first; "
            "its final runs depend on the tuning (use final_specs with the choices)"
        )
    return final_specs(config, None, date)
