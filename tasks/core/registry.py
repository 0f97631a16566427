"""Names and hyper-parameters of the models and optimizers, without importing TensorFlow.

The config schema validates against these tables before any work starts; `tasks.training.models` and
`tasks.training.optimizers` build the TF objects for the same names (a test keeps the two in step).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


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

OPTIMIZER_PARAMS: dict[str, dict[str, Param]] = {
    "sgd": {},
    "momentum": {"momentum": _MOMENTUM},
    "nesterov": {"momentum": _MOMENTUM},
    "adam": {
        "beta1": Param(0.9, _unit_interval, "a number in [0, 1)"),
        "beta2": Param(0.999, _unit_interval, "a number in [0, 1)"),
        "epsilon": _EPSILON,
    },
    "rmsprop": {
        "decay": Param(0.9, _unit_interval, "a number in [0, 1)"),
        "momentum": Param(0.0, _unit_interval, "a number in [0, 1)"),
        "epsilon": Param(1e-10, _positive, "a finite number > 0"),
    },
    "adagrad": {"initial_accumulator_value": Param(0.1, _positive, "a finite number > 0")},
    "msvag": {"beta": _BETA},
    "svag": {"beta": _BETA},
    "ssd": {},
    "mssd": {"beta": _BETA},
}


def resolve_params(table: dict[str, Param], given: dict[str, Any], where: str) -> dict[str, Any]:
    """Fill defaults into `given` and check every value; raise ValueError naming `where.key`.

    Unknown keys are reported with the nearest valid key, so that a typo is easy to spot.
    """
    import difflib

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
