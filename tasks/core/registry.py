"""Names and hyper-parameters of the models and optimizers, without importing TensorFlow.

The config schema validates against these tables before any work starts; `tasks.training.models` and
`tasks.training.optimizers` build the TF objects for the same names (a test keeps the two in step).

Optimizers have one lookup, `optimizer_kind(name)`: the built-ins below, and the plugins that installed
distributions declare in the entry-point group `fmnist_pipeline.optimizers` (tasks.core.plugins). A plugin's
module is imported only when a config names it, so this module never loads TensorFlow.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from tasks.core import plugins


@dataclass(frozen=True)
class Param:
    """One hyper-parameter: its default and the check its value must pass."""

    default: Any
    check: Callable[[Any], bool]
    expected: str  # words for the error message, e.g. "a number in [0, 1)"


def _is_number(value: Any) -> bool:
    """A finite int or float: YAML's `.inf` and `.nan` are floats too, and would crash training later."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _positive(value: Any) -> bool:
    return _is_number(value) and value > 0


def _non_negative(value: Any) -> bool:
    return _is_number(value) and value >= 0


def _unit_interval(value: Any) -> bool:
    return _is_number(value) and 0 <= value < 1


def _open_unit_interval(value: Any) -> bool:
    return _is_number(value) and 0 < value < 1


def _layer_sizes(value: Any) -> bool:
    return (
        isinstance(value, (list, tuple))
        and len(value) >= 1
        and all(isinstance(size, int) and not isinstance(size, bool) and 1 <= size <= 65536 for size in value)
    )


_MOMENTUM = Param(0.9, _unit_interval, "a number in [0, 1)")
_EPSILON = Param(1e-8, _positive, "a finite number > 0")
_BETA = Param(0.9, _open_unit_interval, "a number in (0, 1)")

MODEL_PARAMS: dict[str, dict[str, Param]] = {
    "logreg": {},
    "mlp": {"hidden": Param([128, 128], _layer_sizes, "a non-empty list of layer sizes in [1, 65536]")},
    "cnn_2c2d": {},
    "cnn_p1": {},
}

# name → (hyper-parameters, factory in tasks.training.optimizers). Each factory is called like a plugin's,
# `factory(learning_rate, **params)`; a built-in's table is richer than a signature (ranges, not only types).
_BUILTIN_OPTIMIZERS: dict[str, tuple[dict[str, Param], str]] = {
    "sgd": ({}, "sgd"),
    "momentum": ({"momentum": _MOMENTUM}, "momentum"),
    "nesterov": ({"momentum": _MOMENTUM}, "nesterov"),
    "adam": (
        {
            "beta1": Param(0.9, _unit_interval, "a number in [0, 1)"),
            "beta2": Param(0.999, _unit_interval, "a number in [0, 1)"),
            "epsilon": _EPSILON,
        },
        "adam",
    ),
    "rmsprop": (
        {
            "decay": Param(0.9, _unit_interval, "a number in [0, 1)"),
            "momentum": Param(0.0, _unit_interval, "a number in [0, 1)"),
            "epsilon": Param(1e-10, _positive, "a finite number > 0"),
        },
        "rmsprop",
    ),
    "adagrad": ({"initial_accumulator_value": Param(0.1, _positive, "a finite number > 0")}, "adagrad"),
    "msvag": ({"beta": _BETA}, "msvag"),
    "svag": ({"beta": _BETA}, "svag"),
    "ssd": ({}, "ssd"),
    "mssd": ({"beta": _BETA}, "mssd"),
}

# The built-ins' hyper-parameter tables (what the tests enumerate).
OPTIMIZER_PARAMS: dict[str, dict[str, Param]] = {name: table for name, (table, _) in _BUILTIN_OPTIMIZERS.items()}

BUILTIN_DISTRIBUTION = "fmnist-pipeline"
BUILTIN_FACTORY_MODULE = "tasks.training.optimizers"


@dataclass(frozen=True)
class OptimizerKind:
    """One optimizer name: its hyper-parameters and where its factory lives. Built-in or plugin, the same shape."""

    name: str
    params: dict[str, Param] | None  # None: a plugin that failed to import (its signature is unknown)
    factory: str  # "module:attribute"
    distribution: str
    version: str
    source_file: str  # the factory's module file (error messages name it)
    source_sha256: str | None = None  # a plugin's package files; None for a built-in (RUN_SCHEMA_VERSION covers it)
    imported_sha256: str | None = None  # the same when this process imported the plugin (the code it runs)
    broken: str | None = None  # why a plugin failed to import: its runs are recorded as failed with it

    @property
    def builtin(self) -> bool:
        return self.source_sha256 is None

    @property
    def identity(self) -> dict[str, str] | None:
        """What a plugin adds to its runs' identity; None for a built-in (so its run hashes never change)."""
        if self.builtin:
            return None
        return {"distribution": self.distribution, "version": self.version, "source_sha256": self.source_sha256}

    def describe(self) -> str:
        """'plugin 'lion' (distribution lion-optimizer 0.1.0, /path/lion_optimizer/__init__.py)'."""
        kind = "built-in optimizer" if self.builtin else "optimizer plugin"
        return f"{kind} {self.name!r} (distribution {self.distribution} {self.version}, {self.source_file})"


def _builtin_kind(name: str) -> OptimizerKind:
    table, attribute = _BUILTIN_OPTIMIZERS[name]
    return OptimizerKind(
        name=name,
        params=table,
        factory=f"{BUILTIN_FACTORY_MODULE}:{attribute}",
        distribution=BUILTIN_DISTRIBUTION,
        version="built-in",
        source_file=BUILTIN_FACTORY_MODULE.replace(".", "/") + ".py",
    )


def optimizer_names() -> list[str]:
    """Every optimizer a config may name: the built-ins and the installed plugins (no plugin is imported)."""
    return sorted(set(_BUILTIN_OPTIMIZERS) | set(plugins.declared()))


def optimizer_kind(name: str) -> OptimizerKind:
    """The optimizer `name` names; ValueError for an unknown name (with the nearest), a clash or a broken plugin.

    A built-in is looked up in its table; any other name is a plugin, whose module is imported here to read
    the factory's signature (tasks.core.plugins).
    """
    declared = plugins.declared()
    if name in _BUILTIN_OPTIMIZERS:
        if name in declared:
            others = ", ".join(sorted({plugins.distribution_name(point) for point in declared[name]}))
            raise ValueError(
                f"optimizer {name!r} is declared twice: built into {BUILTIN_DISTRIBUTION} and as a plugin by "
                f"{others} (entry-point group {plugins.GROUP}); the plugin is refused: rename its entry point or "
                f"uninstall {others}"
            )
        return _builtin_kind(name)
    if name in declared:
        return plugins.load(name, declared[name], _plugin_param)
    import difflib

    choices = optimizer_names()
    near = difflib.get_close_matches(name, choices, n=1)
    hint = f" (did you mean '{near[0]}'?)" if near else ""
    return _raise(f"unknown optimizer {name!r}{hint}; choose one of: {', '.join(choices)}")


def plugin_identities(names: Iterable[str]) -> dict[str, dict[str, str]]:
    """Name → identity of each plugin among `names` (built-ins have none)."""
    kinds = [optimizer_kind(name) for name in sorted(set(names))]
    return {kind.name: kind.identity for kind in kinds if kind.identity is not None}


def optimizer_params(name: str) -> dict[str, Param]:
    return optimizer_kind(name).params


def _raise(message: str):
    raise ValueError(message)


def _plugin_param(default: Any) -> Param | None:
    """A plugin's hyper-parameter from its keyword-only default: a finite number of the default's type."""
    if isinstance(default, bool) or not isinstance(default, (int, float)) or not math.isfinite(default):
        return None
    if isinstance(default, int):
        return Param(default, lambda value: _is_number(value) and isinstance(value, int), "a whole number")
    return Param(default, _is_number, "a finite number")


def resolve_params(table: dict[str, Param] | None, given: dict[str, Any], where: str) -> dict[str, Any]:
    """Fill defaults into `given` and check every value; raise ValueError naming `where.key`.

    Unknown keys are reported with the nearest valid key, so that a typo is easy to spot. Without a table (a
    plugin that failed to import), each value must be a finite number and none is added.
    """
    import difflib

    if table is None:
        for key, value in given.items():
            if not _is_number(value):
                raise ValueError(f"{where}.{key}: expected a finite number, found {value!r}")
        return dict(sorted(given.items()))
    resolved: dict[str, Any] = {}
    for key, value in given.items():
        if key not in table:
            valid = sorted(table)
            near = difflib.get_close_matches(key, valid, n=1)
            hint = f" (did you mean '{near[0]}'?)" if near else ""
            choices = ", ".join(valid) if valid else "none"
            raise ValueError(f"{where}.{key}: unknown parameter{hint}; valid parameters: {choices}")
        param = table[key]
        if not param.check(value):
            raise ValueError(f"{where}.{key}: expected {param.expected}, found {value!r}")
        resolved[key] = list(value) if isinstance(value, tuple) else value
    for key, param in table.items():
        resolved.setdefault(key, param.default)
    return dict(sorted(resolved.items()))
