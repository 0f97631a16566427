"""The optimizer registry: every name builds, steps downhill, and bad input is a ConfigError."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow.compat.v1 as tf

from tasks.core.errors import ConfigError
from tasks.core.registry import OPTIMIZER_PARAMS, resolve_params
from tasks.core.runs import OptimizerSettings
from tasks.training.msvag import MSVAGOptimizer, SVAGOptimizer
from tasks.training.optimizers import OPTIMIZER_NAMES
from tasks.training.optimizers import make_optimizer as make_from_settings
from tasks.training.sign import MSSDOptimizer, SSDOptimizer

tf.disable_v2_behavior()

REPO_ROOT = Path(__file__).resolve().parents[1]

EXPECTED_CLASS = {
    "sgd": tf.train.GradientDescentOptimizer,
    "momentum": tf.train.MomentumOptimizer,
    "nesterov": tf.train.MomentumOptimizer,
    "adam": tf.train.AdamOptimizer,
    "rmsprop": tf.train.RMSPropOptimizer,
    "adagrad": tf.train.AdagradOptimizer,
    "msvag": MSVAGOptimizer,
    "svag": SVAGOptimizer,
    "ssd": SSDOptimizer,
    "mssd": MSSDOptimizer,
}

# Non-default hyper-parameters, and the private attribute of the TF object that should hold each.
CUSTOM_PARAMS = {
    "sgd": {},
    "momentum": {"momentum": ("_momentum", 0.5)},
    "nesterov": {"momentum": ("_momentum", 0.7)},
    "adam": {"beta1": ("_beta1", 0.8), "beta2": ("_beta2", 0.99), "epsilon": ("_epsilon", 1e-6)},
    "rmsprop": {"decay": ("_decay", 0.8), "momentum": ("_momentum", 0.3), "epsilon": ("_epsilon", 1e-6)},
    "adagrad": {"initial_accumulator_value": ("_initial_accumulator_value", 0.5)},
    "msvag": {"beta": ("_beta", 0.8)},
    "svag": {"beta": ("_beta", 0.7)},
    "ssd": {},
    "mssd": {"beta": ("_beta", 0.6)},
}


def make_optimizer(name, learning_rate, params):
    """The optimizer of settings checked as the schema checks them (the one check, with its ConfigError)."""
    return make_from_settings(
        OptimizerSettings.parse({"name": name, "learning_rate": learning_rate, "params": params}, source="optimizer")
    )


def test_names_equal_the_registry():
    assert sorted(OPTIMIZER_NAMES) == sorted(OPTIMIZER_PARAMS)
    assert sorted(EXPECTED_CLASS) == sorted(OPTIMIZER_PARAMS)
    assert all(sorted(CUSTOM_PARAMS[name]) == sorted(OPTIMIZER_PARAMS[name]) for name in OPTIMIZER_PARAMS)


@pytest.mark.parametrize("name", sorted(OPTIMIZER_PARAMS))
def test_every_optimizer_takes_a_step_that_reduces_a_quadratic(name):
    params = resolve_params(OPTIMIZER_PARAMS[name], {}, "params")
    with tf.Graph().as_default(), tf.Session() as session:
        x = tf.get_variable("x", initializer=np.array([3.0, -2.0, 0.5], np.float32))
        loss = tf.reduce_sum(tf.square(x))
        optimizer = make_optimizer(name, 0.1, params)
        train_op = optimizer.minimize(loss)
        session.run(tf.global_variables_initializer())
        before = session.run(loss)
        losses = []
        for _ in range(3):
            session.run(train_op)
            losses.append(session.run(loss))
    assert type(optimizer) is EXPECTED_CLASS[name]
    assert losses[0] < before
    assert losses[-1] < before * 0.9
    assert all(np.isfinite(losses))


@pytest.mark.parametrize("name", sorted(OPTIMIZER_PARAMS))
def test_hyper_parameters_reach_the_tf_optimizer(name):
    given = {key: value for key, (_, value) in CUSTOM_PARAMS[name].items()}
    optimizer = make_optimizer(name, 0.05, given)
    for key, (attribute, value) in CUSTOM_PARAMS[name].items():
        assert getattr(optimizer, attribute) == value, key
    # TF's optimizers keep the rate as `_learning_rate`, except Adam (and ours) as `_lr`.
    assert getattr(optimizer, "_learning_rate", getattr(optimizer, "_lr", None)) == 0.05
    assert getattr(optimizer, "_use_nesterov", False) == (name == "nesterov")


def test_importing_the_registry_does_not_import_tensorflow():
    code = "import sys, tasks.training.optimizers; print('tensorflow' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip() == "False"


def test_unknown_name_is_a_config_error_naming_it():
    with pytest.raises(ConfigError, match="adamw") as caught:
        make_optimizer("adamw", 0.1, {})
    assert "adam" in str(caught.value).replace("adamw", "")  # lists the valid names


def test_unknown_parameter_is_a_config_error_naming_it():
    with pytest.raises(ConfigError, match="betta"):
        make_optimizer("msvag", 0.1, {"betta": 0.9})


@pytest.mark.parametrize(
    ("name", "params", "learning_rate", "named"),
    [
        ("adam", {"beta1": 1.0}, 0.1, "beta1"),
        ("momentum", {"momentum": "0.9"}, 0.1, "momentum"),
        ("sgd", {}, 0.0, "learning_rate"),
        ("sgd", {}, True, "learning_rate"),
        ("sgd", {}, float("inf"), "learning_rate"),
        ("adam", {"epsilon": float("inf")}, 0.1, "epsilon"),
        ("rmsprop", {"epsilon": float("nan")}, 0.1, "epsilon"),
        ("adagrad", {"initial_accumulator_value": float("inf")}, 0.1, "initial_accumulator_value"),
        ("mssd", {"beta": 1.0}, 0.1, "beta"),
        ("mssd", {"beta": float("nan")}, 0.1, "beta"),
        ("ssd", {"beta": 0.9}, 0.1, "beta"),  # SSD has no momentum to set
    ],
)
def test_bad_value_is_a_config_error_naming_the_key(name, params, learning_rate, named):
    with pytest.raises(ConfigError, match=named):
        make_optimizer(name, learning_rate, params)


def test_sign_descent_steps_are_alpha_times_the_sign_whatever_the_gradient_scale():
    """Through the registry: ssd and mssd (default β = 0.9) move every coordinate by exactly α."""
    start = np.array([3.0, -2.0, 0.5], np.float32)
    for name in ("ssd", "mssd"):
        params = resolve_params(OPTIMIZER_PARAMS[name], {}, "params")
        assert params == ({"beta": 0.9} if name == "mssd" else {})
        with tf.Graph().as_default(), tf.Session() as session:
            x = tf.get_variable("x", initializer=start)
            train_op = make_optimizer(name, 0.25, params).minimize(tf.reduce_sum(tf.square(x) * [1e3, 1.0, 1e-3]))
            session.run(tf.global_variables_initializer())
            session.run(train_op)
            np.testing.assert_array_equal(session.run(x), [2.75, -1.75, 0.25])
