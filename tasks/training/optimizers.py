"""The optimizer factories: checked `OptimizerSettings` → a `tf.compat.v1.train.Optimizer`.

Built-ins and plugins go through one lookup (tasks.core.registry.optimizer_kind) and one call,
`factory(learning_rate, **params)`. TensorFlow is imported inside the factories, so that the scheduler and
the config code can import this module without loading TF. A plugin that raises while it is built, or
returns something else than an optimizer, is a TrainingError naming the plugin and its file.
"""

from __future__ import annotations

from typing import Any

from tasks.core.errors import PluginFault, TrainingError
from tasks.core.plugins import load_factory
from tasks.core.registry import OPTIMIZER_PARAMS, optimizer_kind
from tasks.core.runs import OptimizerSettings


def _tf():
    from tasks.training.tf1 import tf  # deferred: importing the registry must not load TF

    return tf


def sgd(learning_rate: float):
    return _tf().train.GradientDescentOptimizer(learning_rate)


def momentum(learning_rate: float, *, momentum: float):
    return _tf().train.MomentumOptimizer(learning_rate, momentum=momentum)


def nesterov(learning_rate: float, *, momentum: float):
    return _tf().train.MomentumOptimizer(learning_rate, momentum=momentum, use_nesterov=True)


def adam(learning_rate: float, *, beta1: float, beta2: float, epsilon: float):
    return _tf().train.AdamOptimizer(learning_rate, beta1=beta1, beta2=beta2, epsilon=epsilon)


def rmsprop(learning_rate: float, *, decay: float, momentum: float, epsilon: float):
    return _tf().train.RMSPropOptimizer(learning_rate, decay=decay, momentum=momentum, epsilon=epsilon)


def adagrad(learning_rate: float, *, initial_accumulator_value: float):
    return _tf().train.AdagradOptimizer(learning_rate, initial_accumulator_value=initial_accumulator_value)


def msvag(learning_rate: float, *, beta: float):
    from tasks.training.msvag import MSVAGOptimizer

    return MSVAGOptimizer(learning_rate, beta=beta)


def svag(learning_rate: float, *, beta: float):
    from tasks.training.msvag import SVAGOptimizer

    return SVAGOptimizer(learning_rate, beta=beta)


def ssd(learning_rate: float):
    from tasks.training.sign import SSDOptimizer

    return SSDOptimizer(learning_rate)


def mssd(learning_rate: float, *, beta: float):
    from tasks.training.sign import MSSDOptimizer

    return MSSDOptimizer(learning_rate, beta=beta)


OPTIMIZER_NAMES: tuple[str, ...] = tuple(OPTIMIZER_PARAMS)


def make_optimizer(settings: OptimizerSettings, rate: Any = None) -> Any:
    """The TF optimizer of `settings`, whose name, learning rate and params the config schema has checked.

    `rate` replaces the constant learning rate for a scheduled run: a zero-argument callable returning the
    step's rate tensor (tasks.training.schedules.ScheduledRate), which the optimizer resolves in `_prepare`.
    """
    learning_rate = settings.learning_rate if rate is None else rate
    try:
        kind = optimizer_kind(settings.name)
    except ValueError as exc:
        raise TrainingError(f"optimizer of this run: {exc}") from None
    if settings.plugin is not None and settings.plugin.as_dict() != kind.identity:
        raise TrainingError(
            f"{kind.describe()}: the run was planned with {settings.plugin.as_dict()}, but the installed plugin is "
            f"{kind.identity}; the plugin changed since: rerun the command, which plans its runs anew"
        )
    if kind.imported_sha256 != kind.source_sha256:
        raise TrainingError(
            f"{kind.describe()}: its source changed after this process imported it, so the code loaded here is not "
            "the code the run's hash names; rerun the command (a new process imports the plugin anew)"
        )
    if kind.builtin:
        return load_factory(kind.factory)(learning_rate, **settings.params)
    if kind.broken:
        raise PluginFault(kind.broken)
    try:
        factory = load_factory(kind.factory)
    except Exception as exc:
        raise PluginFault(f"{kind.describe()}: its factory {kind.factory} could not be loaded: {exc}") from exc
    try:
        optimizer = factory(learning_rate, **settings.params)
    except Exception as exc:
        raise PluginFault(
            f"{kind.describe()} raised {type(exc).__name__} while building its optimizer: {exc}; fix the plugin's "
            f"factory {kind.factory}"
        ) from exc
    if not isinstance(optimizer, _tf().train.Optimizer):
        raise PluginFault(
            f"{kind.describe()}: its factory {kind.factory} returned {type(optimizer).__name__}, expected a "
            "tf.compat.v1.train.Optimizer"
        )
    return optimizer
