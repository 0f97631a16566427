"""The experiment config: one typed schema, validated before any work starts.

A config names the model, the training budget, the split, the seeds and a list of optimizer entries.
Each entry's learning rate may be a list, which makes a grid. `expand_runs` turns a config into
`RunSpec`s, one per (optimizer entry, learning rate, seed); each carries a short stable hash of exactly
the settings that define its result, so editing one optimizer reruns that optimizer alone.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BeforeValidator,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    field_validator,
    model_validator,
)

from tasks.core.configfile import quote_value, read_config_yaml
from tasks.core.errors import ConfigError
from tasks.core.registry import MODEL_PARAMS, optimizer_params, resolve_params
from tasks.core.schedule import ScheduleConfig
from tasks.core.schema import MAX_STEPS, _Strict
from tasks.core.storage import TEMP_MARKER

DEFAULT_TARGETS = (0.85, 0.88)

# Matched whole (fullmatch): with `$`, a name ending in a newline would pass.
SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


def check_safe_name(value: str, what: str) -> str:
    """A name used as a path component: letters, digits, '_', '.', '-'; no '..', no separators, and no
    TEMP_MARKER ('.tmp-'), so that no target named after it can pass for a temp file."""
    if not isinstance(value, str) or not SAFE_NAME.fullmatch(value) or ".." in value or TEMP_MARKER in value:
        raise ValueError(
            f"{what} {quote_value(value)} is not safe as a folder name: use 1-64 letters, digits, '_', '.' or '-', "
            f"starting with a letter or digit, with no '..' and no '{TEMP_MARKER}' (it marks temp files)"
        )
    return value


MAX_SEED = 2**31 - 1
PER_SEED = "per_seed"  # split.seed: draw each run's validation split with the run's own seed


def check_seed(value: Any) -> int:
    """A seed: an int in [0, 2^31-1] (numpy's and TensorFlow's seeds take any of them). The one seed check."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_SEED:
        raise ValueError(f"expected a seed, an integer in [0, 2^31-1], found {quote_value(value)}")
    return value


def check_learning_rate(value: Any) -> float:
    """A learning rate: a finite number > 0, as a float. The one learning-rate check."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"expected a number > 0, found {value!r}")
    if not (value > 0 and math.isfinite(value)):
        raise ValueError(f"expected a finite number > 0, found {value!r}")
    return float(value)


def check_split_seed(value: Any) -> int | str:
    """A split's seed: a seed, or `per_seed` (each run's own seed)."""
    if value == PER_SEED and isinstance(value, str):
        return value
    try:
        return check_seed(value)
    except ValueError:
        raise ValueError(
            f"expected a seed, an integer in [0, 2^31-1], or '{PER_SEED}', found {quote_value(value)}"
        ) from None


# A learning-rate grid point is kept to 12 significant digits, so that a computed grid (the log shorthand, or a
# point added beyond an edge) is the same list of floats on every machine, and 1e-3 * 10**0.5 prints as it reads.
GRID_DIGITS = 12
LOG_GRID_KEYS = ("log_min", "log_max", "points")
MAX_GRID_POINTS = 50


def grid_point(value: float) -> float:
    """A computed learning rate rounded to GRID_DIGITS significant digits (deterministic, exact endpoints)."""
    return float(f"{value:.{GRID_DIGITS}g}")


def log_grid(spec: Mapping[str, Any]) -> list[float]:
    """`{log_min: a, log_max: b, points: n}`: n learning rates evenly spaced in log10 from a to b, both included.

    The list is what a written-out list of the same numbers would be (`grid_point` of each), so it hashes the
    same way; a ValueError names the key at fault.
    """
    keys = sorted(spec)
    if keys != sorted(LOG_GRID_KEYS):
        raise ValueError(
            f"a learning-rate grid shorthand takes exactly the keys {list(LOG_GRID_KEYS)}, found {keys}; "
            "or write the rates as a list"
        )
    low, high = (check_learning_rate(spec[key]) for key in ("log_min", "log_max"))
    points = spec["points"]
    if isinstance(points, bool) or not isinstance(points, int) or not 2 <= points <= MAX_GRID_POINTS:
        raise ValueError(f"points: expected an integer in [2, {MAX_GRID_POINTS}], found {quote_value(points)}")
    if not low < high:
        raise ValueError(f"expected log_min < log_max, found log_min {low!r} and log_max {high!r}")
    step = (math.log10(high) - math.log10(low)) / (points - 1)
    inner = [grid_point(10 ** (math.log10(low) + index * step)) for index in range(1, points - 1)]
    return [low, *inner, high]


Seed = Annotated[int, BeforeValidator(check_seed)]
SplitSeed = Annotated[int | str, BeforeValidator(check_split_seed)]
LearningRate = Annotated[float, BeforeValidator(check_learning_rate)]


class ModelConfig(_Strict):
    name: str
    params: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _known_model(self) -> ModelConfig:
        object.__setattr__(self, "params", known_params("model name", self.name, self.params, MODEL_PARAMS))
        return self


class TrainingConfig(_Strict):
    """The budget, in `epochs` or in `steps` (exactly one), and the batch size.

    A step budget trains whole epochs and then a final partial one that stops at step `steps`; validation
    and checkpoints come at each epoch's end and at step `steps` (see docs/schedules-and-budgets.md).
    """

    epochs: int | None = Field(default=None, ge=1, le=10000)
    steps: int | None = Field(default=None, ge=1, le=MAX_STEPS)
    batch_size: int = Field(ge=1, le=65536)

    @model_validator(mode="after")
    def _one_budget(self) -> TrainingConfig:
        if (self.epochs is None) == (self.steps is None):
            found = "both" if self.epochs is not None else "neither"
            raise ValueError(
                f"training.epochs / training.steps: expected exactly one budget, found {found}; "
                "give e.g. `epochs: 20` or `steps: 6000`"
            )
        return self

    def identity(self) -> dict[str, Any]:
        """The budget as the run hash covers it: the unset one of epochs/steps is left out, so an epoch
        config hashes exactly as it did before step budgets existed."""
        data = {"epochs": self.epochs, "steps": self.steps, "batch_size": self.batch_size}
        return {key: value for key, value in data.items() if value is not None}

    def total_steps(self, steps_per_epoch: int) -> int:
        """The run's budget in optimizer steps."""
        return self.steps if self.steps is not None else self.epochs * steps_per_epoch

    def total_epochs(self, steps_per_epoch: int) -> int:
        """Epochs started: whole ones, plus a final partial one when a step budget ends mid-epoch."""
        return -(-self.total_steps(steps_per_epoch) // steps_per_epoch)


class SplitConfig(_Strict):
    """The validation rows taken out of the training file: `validation_per_class` per class, drawn with `seed`,
    or with each run's own seed (`per_seed`), so that data-sampling noise enters the seed-to-seed spread while
    seed s still gives every optimizer the same split."""

    validation_per_class: int = Field(default=600, ge=1, le=5000)
    seed: SplitSeed = 0

    def seed_for(self, run_seed: int) -> int:
        """The seed the split of a run with seed `run_seed` is drawn with."""
        return run_seed if self.seed == PER_SEED else self.seed

    @property
    def varies(self) -> bool:
        return self.seed == PER_SEED


class OptimizerEntry(_Strict):
    name: str
    optimizer: str | None = None  # registry name; defaults to `name`
    learning_rate: float | list[float]
    params: dict[str, Any] = Field(default_factory=dict)
    schedule: ScheduleConfig = Field(default_factory=ScheduleConfig)

    @field_validator("learning_rate", mode="before")
    @classmethod
    def _positive_rates(cls, value: Any) -> Any:
        if isinstance(value, Mapping):
            return log_grid(value)  # the shorthand {log_min, log_max, points}: validated like a written list
        if not isinstance(value, list):
            return check_learning_rate(value)
        if not value:
            raise ValueError("expected a number > 0 or a non-empty list of them, found an empty list")
        rates = [check_learning_rate(rate) for rate in value]
        if len(set(rates)) != len(rates):
            raise ValueError(f"the grid lists a learning rate twice: {value}")
        return rates

    @model_validator(mode="after")
    def _known_optimizer(self) -> OptimizerEntry:
        check_safe_name(self.name, "optimizer entry name")
        registry_name = self.optimizer or self.name
        try:  # a built-in, or an installed plugin (imported here: tasks.core.registry.optimizer_kind)
            table = optimizer_params(registry_name)
        except ValueError as exc:
            raise ValueError(f"{'optimizer' if self.optimizer else 'name'}: {exc}") from None
        object.__setattr__(self, "optimizer", registry_name)
        object.__setattr__(self, "params", resolve_params(table, self.params, "params"))
        return self

    @property
    def learning_rates(self) -> list[float]:
        return self.learning_rate if isinstance(self.learning_rate, list) else [self.learning_rate]


class HalvingConfig(_Strict):
    """Successive halving of a tuned grid: at each rung (an epoch count) every point still in the race is
    ranked by its validation accuracy at that epoch, and the best `keep` fraction (at least one) goes on; the
    others stop there. The survivors train all epochs and the choice is made among them."""

    rungs: list[int] = Field(min_length=1, max_length=10)
    keep: float = Field(gt=0, lt=1)

    @field_validator("rungs")
    @classmethod
    def _increasing(cls, value: list[int]) -> list[int]:
        if value[0] < 1 or sorted(set(value)) != value:
            raise ValueError(f"expected distinct epoch counts >= 1 in increasing order, found {value}")
        return value


class TuningConfig(_Strict):
    """How a tuned grid is searched. `extend`: when the choice is at an edge of the grid, add the next point
    beyond it (the edge's own log spacing) and choose again, at most this many times; 0 (the default) never
    extends. `halving`: successive halving (HalvingConfig); absent: every point trains all epochs."""

    extend: int = Field(default=0, ge=0, le=10)
    halving: HalvingConfig | None = None


class AdaptiveSeeds(_Strict):
    """Seeds until the answer is settled: seeds 0..pilot-1 first, then as many more per optimizer as its pairs
    need to reach a verdict with power 0.8 (tasks.reporting.seedplan), at most `max` in all."""

    pilot: int = Field(ge=3, le=1000)
    max: int = Field(ge=3, le=1000)

    @model_validator(mode="after")
    def _pilot_below_max(self) -> AdaptiveSeeds:
        if self.max < self.pilot:
            raise ValueError(f"expected max >= pilot, found pilot {self.pilot} and max {self.max}")
        return self


# `seeds` is a list or a mapping; the discriminator validates it as one of the two, so an error names one.
_BRANCH_TAGS = ("fixed seeds", "adaptive seeds")
SeedsField = Annotated[
    Annotated[list[Seed], Tag(_BRANCH_TAGS[0])] | Annotated[AdaptiveSeeds, Tag(_BRANCH_TAGS[1])],
    Discriminator(lambda value: _BRANCH_TAGS[1] if isinstance(value, (dict, AdaptiveSeeds)) else _BRANCH_TAGS[0]),
]

# The default practical margin of the "equivalent" verdict, in accuracy: 0.5 points. Measured on the default
# config (10,000 test images): paired differences of two optimizers have a seed-to-seed SD of 0.2-0.7 points
# and a test-sample SE of up to 0.09 points, so a ±0.2-point margin could not be settled by any seed count for
# most pairs (the test sample alone is too wide) and needs hundreds of seeds for the rest (docs/statistics.md).
DEFAULT_EQUIVALENCE_MARGIN = 0.005


class NightlyConfig(_Strict):
    seed_policy: Literal["fixed", "date"] = "fixed"
    regression_window: int = Field(default=5, ge=1, le=365)
    regression_threshold: float = Field(default=0.01, ge=0, le=1)


class ExperimentConfig(_Strict):
    experiment: str
    model: ModelConfig
    training: TrainingConfig
    split: SplitConfig = Field(default_factory=SplitConfig)
    # A list of seeds, or {pilot, max}: the seeds an adaptive comparison starts from and may grow to.
    seeds: SeedsField
    optimizers: list[OptimizerEntry] = Field(min_length=1)
    # Seeds on which a learning-rate grid is tuned (validation only) before its chosen point runs on `seeds`.
    tuning_seeds: list[Seed] | None = None
    # How a tuned grid is searched (edge extension, successive halving); None: the whole written grid, all epochs.
    tuning: TuningConfig | None = None
    # Validation-accuracy targets for time-to-target; a reporting setting, so no run's hash covers it.
    targets: list[float] = Field(default_factory=lambda: list(DEFAULT_TARGETS), min_length=1, max_length=8)
    nightly: NightlyConfig = Field(default_factory=NightlyConfig)
    # The practical margin of the "equivalent" verdict, in accuracy (a reporting setting: no run's hash covers it).
    equivalence_margin: float = Field(default=DEFAULT_EQUIVALENCE_MARGIN, gt=0, le=0.5)

    @field_validator("experiment")
    @classmethod
    def _safe_experiment(cls, value: str) -> str:
        return check_safe_name(value, "experiment name")

    @field_validator("seeds", "tuning_seeds")
    @classmethod
    def _distinct_seeds(cls, value: Any) -> Any:
        if isinstance(value, list) and not value:
            raise ValueError("expected at least 1 seed, found an empty list")
        if isinstance(value, list) and len(set(value)) != len(value):
            raise ValueError(f"a seed is listed twice: {value}")
        return value

    @field_validator("targets")
    @classmethod
    def _target_values(cls, value: list[float]) -> list[float]:
        for target in value:
            if not (0 < target <= 1 and math.isfinite(target)):
                raise ValueError(f"expected validation accuracies in (0, 1], found {target!r}")
        if sorted(set(value)) != value:
            raise ValueError(f"expected distinct targets in increasing order, found {value}")
        return value

    @property
    def adaptive(self) -> AdaptiveSeeds | None:
        """The adaptive-seeds policy, or None when `seeds` is a fixed list."""
        return self.seeds if isinstance(self.seeds, AdaptiveSeeds) else None

    @property
    def first_seeds(self) -> list[int]:
        """The fixed seeds, or an adaptive comparison's pilot seeds 0..pilot-1."""
        return list(range(self.seeds.pilot)) if isinstance(self.seeds, AdaptiveSeeds) else list(self.seeds)

    @model_validator(mode="after")
    def _tuning_seed_count(self) -> ExperimentConfig:
        most = self.seeds.max if isinstance(self.seeds, AdaptiveSeeds) else len(self.seeds)
        if self.tuning_seeds is not None and not 2 <= len(self.tuning_seeds) < most:
            raise ValueError(
                f"tuning_seeds: expected at least 2 seeds and fewer than the {most} of 'seeds', "
                f"found {len(self.tuning_seeds)}; tuning picks a learning rate on a few seeds, then runs it on all"
            )
        return self

    @model_validator(mode="after")
    def _tuning_fits(self) -> ExperimentConfig:
        if self.tuning is None:
            return self
        if self.tuning_seeds is None:
            raise ValueError("tuning: applies to grids tuned on 'tuning_seeds'; add tuning_seeds or drop 'tuning'")
        halving = self.tuning.halving
        if halving is not None and self.training.epochs is None:
            raise ValueError(
                f"tuning.halving: its rungs are epoch counts, so it needs training.epochs; found a budget of "
                f"training.steps {self.training.steps}"
            )
        if halving is not None and halving.rungs[-1] >= self.training.epochs:
            raise ValueError(
                f"tuning.halving.rungs: expected epoch counts below training.epochs ({self.training.epochs}), "
                f"found {halving.rungs}; the last rung is followed by the full run of the survivors"
            )
        return self

    @model_validator(mode="after")
    def _unique_entries(self) -> ExperimentConfig:
        names = [entry.name for entry in self.optimizers]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(
                f"optimizers: duplicate run name(s) {duplicates}; give each entry its own 'name' "
                "and set 'optimizer' to the registry name"
            )
        return self


def load_config(path: str | Path) -> ExperimentConfig:
    """Read and validate an experiment YAML; every problem is a ConfigError naming the file and key."""
    return parse_config(read_config_yaml(path), source=str(Path(path)))


MAX_PROBLEMS_SHOWN = 10


def parse_config(raw: Any, source: str = "<config>") -> ExperimentConfig:
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: expected a mapping of sections at the top level, found {type(raw).__name__}")
    try:
        return ExperimentConfig.model_validate(raw)
    except ValidationError as exc:
        errors = exc.errors()
        problems = [_clip(_describe(error, raw)) for error in errors[:MAX_PROBLEMS_SHOWN]]
        if len(errors) > MAX_PROBLEMS_SHOWN:
            problems.append(f"... and {len(errors) - MAX_PROBLEMS_SHOWN} more")
        if len(errors) == 1:
            raise ConfigError(f"{source}: {problems[0]}") from None
        raise ConfigError(f"{source}: {len(errors)} problems:\n  - " + "\n  - ".join(problems)) from None


_SECTION_FIELDS = {
    (): ExperimentConfig,
    ("model",): ModelConfig,
    ("training",): TrainingConfig,
    ("split",): SplitConfig,
    ("nightly",): NightlyConfig,
    ("seeds",): AdaptiveSeeds,
    ("optimizers", "schedule"): ScheduleConfig,
    ("tuning",): TuningConfig,
    ("tuning", "halving"): HalvingConfig,
}


def _describe(error: dict[str, Any], raw: Any) -> str:
    location = tuple(part for part in error["loc"] if part not in _BRANCH_TAGS)
    key = ".".join(str(part) for part in location) or "(top level)"
    if error["type"] == "extra_forbidden":
        parent = tuple(p for p in location[:-1] if not isinstance(p, int))
        model = OptimizerEntry if parent == ("optimizers",) else _SECTION_FIELDS.get(parent)
        valid = sorted(model.model_fields) if model else []
        near = difflib.get_close_matches(str(location[-1]), valid, n=1)
        hint = f" (did you mean '{near[0]}'?)" if near else ""
        return f"{key}: unknown key{hint}; valid keys here: {', '.join(valid)}"
    if error["type"] == "missing":
        return f"{key}: required key is missing"
    message = error["msg"].removeprefix("Value error, ")
    found = error.get("input")
    if message.startswith(("params.", "optimizer:", "name:", *(f"{key}:" for key in ScheduleConfig.model_fields))):
        # A validator that knows the sub-key says so first: join it onto the location.
        return f"{key}.{message}"
    if error["type"].endswith("_type") or error["type"].startswith(("greater", "less", "literal")):
        return f"{key}: {message}, found {quote_value(found)}"
    return f"{key}: {message}"


def _clip(message: str, limit: int = 400) -> str:
    """A validator's message or a key may quote a value in full: keep one problem to a few lines."""
    return message if len(message) <= limit else message[: limit - 3] + "..."


def known_params(what: str, name: str, params: dict[str, Any], table: dict[str, Any]) -> dict[str, Any]:
    """`params` checked and completed from `name`'s entry of `table`; a ValueError listing the choices for an
    unknown `name` (`what` names the kind of choice in it)."""
    if name not in table:
        raise ValueError(_unknown_choice(what, name, table))
    return resolve_params(table[name], params, "params")


def _unknown_choice(what: str, value: Any, table: dict[str, Any]) -> str:
    near = difflib.get_close_matches(str(value), sorted(table), n=1)
    hint = f" (did you mean '{near[0]}'?)" if near else ""
    return f"unknown {what} {value!r}{hint}; choose one of: {', '.join(sorted(table))}"
