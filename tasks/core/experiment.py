"""An experiment config as the pipeline sees it: loaded once per file version, hashed, and its tuning records.

A tuned entry's grid is named by the hash of its runs (run hash and seed of every point) and of the config's
`tuning` section when there is one, so editing the grid, the tuning seeds or the search gives a new tuning
record, and the old one stays for inspection. A tuning record
is data read back from disk: it is believed only when it covers exactly its grid and its choice is the one
the selection rule makes (tasks.core.selection).
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from tasks.core.config import ExperimentConfig, load_config
from tasks.core.errors import ConfigError
from tasks.core.layout import Layout
from tasks.core.registry import plugin_identities
from tasks.core.runs import HASH_LENGTH, entry_named, grid_specs
from tasks.core.selection import check_tuning_record
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
    """The hash of a whole validated config: a report records it, and is rebuilt when it changes.

    It covers the identity of every plugin optimizer the config names (editing a plugin rebuilds the report);
    a config of built-ins only hashes as it did before plugins existed."""
    # A constant learning rate (no schedule) is left out, so a config hashes as it did before schedules existed.
    constant = {index: {"schedule"} for index, entry in enumerate(config.optimizers) if entry.schedule.is_constant}
    text = config.model_dump_json(exclude={"optimizers": constant} if constant else None)
    identities = plugin_identities(entry.optimizer for entry in config.optimizers)
    if identities:
        text += json.dumps(identities, sort_keys=True)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:HASH_LENGTH]


def tuning_record_path(layout: Layout, config: ExperimentConfig, entry: str) -> Path:
    """Where the tuning record of a tuned entry's current grid lives."""
    hashes = ",".join(f"{spec.run_hash}:{spec.seed}" for spec in grid_specs(config, entry_named(config, entry)))
    if config.tuning is not None:  # how the grid is searched; a config without `tuning` keeps its old records
        hashes += f"|tuning:{config.tuning.model_dump_json()}"
    grid_hash = hashlib.sha256(hashes.encode()).hexdigest()[:HASH_LENGTH]
    return layout.tuning_record(config.experiment, entry, grid_hash)


def _read_record(path: Path) -> tuple[Any, str | None]:
    """(the JSON at `path`, None), or (None, why it cannot be read) for a missing or unreadable file."""
    try:
        return read_json(path), None
    except FileNotFoundError:
        return None, f"{path} not found"
    except (OSError, ValueError) as exc:
        return None, f"{path} is not readable JSON ({exc})"


def tuning_record_problem(path: Path, config: ExperimentConfig, entry: str) -> str | None:
    """Why the tuning record at `path` cannot be believed for entry's grid, or None when it can."""
    record, problem = _read_record(path)
    if problem:
        return problem
    tuning = config.tuning
    problem = check_tuning_record(
        record,
        entry_named(config, entry).learning_rates,
        extend=tuning.extend if tuning else 0,
        halving=tuning.halving.model_dump() if tuning and tuning.halving else None,
    )
    return f"{path}: {problem}" if problem else None


def read_tuning(paths: Iterable[tuple[str, Path]], config: ExperimentConfig) -> dict[str, dict[str, Any]]:
    """Each tuned entry's tuning record, from (entry, path) pairs of finished tunings; checked."""
    records = {}
    for entry, path in paths:
        problem = tuning_record_problem(path, config, entry)
        if problem:
            raise ConfigError(f"tuning of {entry!r}: {problem}; rerun the command to tune it again")
        records[entry] = read_json(path)
    return records


def seed_plan_path(layout: Layout, config: ExperimentConfig) -> Path:
    """Where an adaptive comparison's seed plan lives: per version of the whole config."""
    return layout.seed_plan(config.experiment, config_hash(config))


def seed_plan_problem(path: Path, config: ExperimentConfig) -> str | None:
    """Why the seed plan at `path` cannot be believed for `config`, or None when it can: it must give every
    entry of the config a seed count between the pilot and the max."""
    record, problem = _read_record(path)
    if problem:
        return problem
    policy = config.adaptive
    seeds = record.get("seeds") if isinstance(record, dict) else None
    names = [entry.name for entry in config.optimizers]
    if policy is None or not isinstance(seeds, dict) or sorted(seeds) != sorted(names):
        return f"{path}: expected seed counts for the entries {names}, found {seeds!r}"
    for name, count in seeds.items():
        if isinstance(count, bool) or not isinstance(count, int) or not policy.pilot <= count <= policy.max:
            return f"{path}: seeds of {name!r} is {count!r}, expected an integer in [{policy.pilot}, {policy.max}]"
    if record.get("config_hash") != config_hash(config):
        return f"{path}: written for config {record.get('config_hash')!r}, not {config_hash(config)}"
    return None


def chosen_rates(tuning: dict[str, dict[str, Any]]) -> dict[str, float]:
    return {name: float(record["chosen_learning_rate"]) for name, record in tuning.items()}
