"""The optimizer registry: checked `OptimizerSettings` → a `tf.compat.v1.train.Optimizer`.

TensorFlow is imported inside the factories, so that the scheduler and the config code can import
this module without loading TF.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tasks.core.runs import OptimizerSettings


def _tf():
    from tasks.training.tf1 import tf  # deferred: importing the registry must not load TF

    return tf


def _sgd(learning_rate: float, params: dict[str, Any]):
    return _tf().train.GradientDescentOptimizer(learning_rate)


def _momentum(learning_rate: float, params: dict[str, Any]):
    return _tf().train.MomentumOptimizer(learning_rate, momentum=params["momentum"])


def _nesterov(learning_rate: float, params: dict[str, Any]):
    return _tf().train.MomentumOptimizer(learning_rate, momentum=params["momentum"], use_nesterov=True)


def _adam(learning_rate: float, params: dict[str, Any]):
    return _tf().train.AdamOptimizer(
        learning_rate, beta1=params["beta1"], beta2=params["beta2"], epsilon=params["epsilon"]
    )


def _rmsprop(learning_rate: float, params: dict[str, Any]):
    return _tf().train.RMSPropOptimizer(
        learning_rate, decay=params["decay"], momentum=params["momentum"], epsilon=params["epsilon"]
    )


def _adagrad(learning_rate: float, params: dict[str, Any]):
    return _tf().train.AdagradOptimizer(learning_rate, initial_accumulator_value=params["initial_accumulator_value"])


def _msvag(learning_rate: float, params: dict[str, Any]):
    from tasks.training.msvag import MSVAGOptimizer

    return MSVAGOptimizer(learning_rate, beta=params["beta"])


def _svag(learning_rate: float, params: dict[str, Any]):
    from tasks.training.msvag import SVAGOptimizer

    return SVAGOptimizer(learning_rate, beta=params["beta"])


def _ssd(learning_rate: float, params: dict[str, Any]):
    from tasks.training.sign import SSDOptimizer

    return SSDOptimizer(learning_rate)


def _mssd(learning_rate: float, params: dict[str, Any]):
    from tasks.training.sign import MSSDOptimizer

    return MSSDOptimizer(learning_rate, beta=params["beta"])


_FACTORIES: dict[str, Callable[[float, dict[str, Any]], Any]] = {
    "sgd": _sgd,
    "momentum": _momentum,
    "nesterov": _nesterov,
    "adam": _adam,
    "rmsprop": _rmsprop,
    "adagrad": _adagrad,
    "msvag": _msvag,
    "svag": _svag,
    "ssd": _ssd,
    "mssd": _mssd,
}

OPTIMIZER_NAMES: tuple[str, ...] = tuple(_FACTORIES)


def make_optimizer(settings: OptimizerSettings):
    """The TF optimizer of `settings`, whose name, learning rate and params the config schema has checked."""
    return _FACTORIES[settings.name](settings.learning_rate, dict(settings.params))
