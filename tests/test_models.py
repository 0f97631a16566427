"""The graph builders: output shapes, parameter counts, initial values, and the standalone inference graph."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tasks.core.config import ModelConfig
from tasks.core.errors import ConfigError
from tasks.core.registry import MODEL_PARAMS
from tasks.training import models
from tasks.training.tf1 import tf

# Weights + biases, layer by layer.
EXPECTED_PARAMETERS = {
    ("logreg", ()): 784 * 10 + 10,
    ("mlp", ()): 784 * 128 + 128 + 128 * 128 + 128 + 128 * 10 + 10,  # 118,282: the original 784-128-128-10
    ("mlp", (("hidden", (16,)),)): 784 * 16 + 16 + 16 * 10 + 10,
    ("mlp", (("hidden", (64, 32, 16)),)): 784 * 64 + 64 + 64 * 32 + 32 + 32 * 16 + 16 + 16 * 10 + 10,
    # conv 5×5×1×32, conv 5×5×32×64, dense 7·7·64×1024, dense 1024×10: DeepOBS fmnist_2c2d
    ("cnn_2c2d", ()): (25 * 32 + 32) + (25 * 32 * 64 + 64) + (7 * 7 * 64 * 1024 + 1024) + (1024 * 10 + 10),
    # P1 of Balles & Hennig: 3×3 'same' pools of stride 2 still take 28 → 14 → 7, so the same layers:
    # 832 + 51,264 + 3,212,288 + 10,250 = 3,274,634 (the pools have no parameters).
    ("cnn_p1", ()): (5 * 5 * 1 * 32 + 32) + (5 * 5 * 32 * 64 + 64) + (7 * 7 * 64 * 1024 + 1024) + (1024 * 10 + 10),
}


def _build(name: str, params: dict, batch: int = 3):
    """(logits value, {variable name: value}) for a fresh graph fed `batch` random images."""
    graph = tf.Graph()
    with graph.as_default():
        tf.set_random_seed(0)
        images = tf.placeholder(tf.float32, [None, 784])
        with tf.variable_scope(models.MODEL_SCOPE):
            logits = models.build_model(ModelConfig(name=name, params=params), images)
        assert logits.shape.as_list() == [None, 10]
        with tf.Session() as session:
            session.run(tf.global_variables_initializer())
            feed = np.random.default_rng(0).random((batch, 784), dtype=np.float32)
            value, variables = session.run([logits, {v.op.name: v for v in tf.global_variables()}], {images: feed})
    return value, variables


def test_model_builders_match_the_registry():
    assert set(models.MODEL_BUILDERS) == set(MODEL_PARAMS)


@pytest.mark.parametrize("name, params", sorted(EXPECTED_PARAMETERS), ids=str)
def test_each_model_has_the_expected_output_shape_and_parameter_count(name, params):
    logits, variables = _build(name, {key: list(value) for key, value in params})
    assert logits.shape == (3, 10)
    assert np.all(np.isfinite(logits))
    assert sum(value.size for value in variables.values()) == EXPECTED_PARAMETERS[(name, params)]
    assert all(variable.startswith(f"{models.MODEL_SCOPE}/{name}/") for variable in variables)


def test_cnn_p1_is_the_papers_network_layer_by_layer():
    """conv 5×5×32 SAME + ReLU, max-pool 3×3/2 SAME, conv 5×5×64 SAME + ReLU, max-pool 3×3/2 SAME, dense 1024
    + ReLU, dense 10: read back from the graph's ops, not only counted."""
    graph = tf.Graph()
    with graph.as_default():
        images = tf.placeholder(tf.float32, [2, 784])
        with tf.variable_scope(models.MODEL_SCOPE):
            models.build_model(ModelConfig(name="cnn_p1"), images)
    ops = [op for op in graph.get_operations() if op.name.startswith("model/cnn_p1/")]
    convs = [op for op in ops if op.type == "Conv2D"]
    pools = [op for op in ops if op.type == "MaxPool"]
    relus = [op for op in ops if op.type == "Relu"]
    assert [op.inputs[1].shape.as_list() for op in convs] == [[5, 5, 1, 32], [5, 5, 32, 64]]
    assert all(op.get_attr("padding") == b"SAME" and op.get_attr("strides") == [1, 1, 1, 1] for op in convs)
    assert [op.get_attr("ksize") for op in pools] == [[1, 3, 3, 1]] * 2
    assert [op.get_attr("strides") for op in pools] == [[1, 2, 2, 1]] * 2
    assert all(op.get_attr("padding") == b"SAME" for op in pools)
    assert [op.outputs[0].shape.as_list() for op in pools] == [[2, 14, 14, 32], [2, 7, 7, 64]]
    # ReLU after each conv and after the 1024 layer; the 10 logits stay linear.
    assert [op.outputs[0].shape.as_list() for op in relus] == [[2, 28, 28, 32], [2, 14, 14, 64], [2, 1024]]
    assert [pool.inputs[0].op for pool in pools] == relus[:2]


def test_cnn_p1_and_cnn_2c2d_differ_only_in_the_pooling_window():
    """The same weights in both networks give different logits: the 3×3 windows overlap, 2×2 do not."""
    logits = {}
    weights = None
    for name in ("cnn_2c2d", "cnn_p1"):
        graph = tf.Graph()
        with graph.as_default():
            tf.set_random_seed(0)
            images = tf.placeholder(tf.float32, [None, 784])
            with tf.variable_scope(models.MODEL_SCOPE):
                output = models.build_model(ModelConfig(name=name), images)
            variables = sorted(tf.global_variables(), key=lambda v: v.op.name.split("/", 2)[2])
            with tf.Session() as session:
                session.run(tf.global_variables_initializer())
                if weights is None:
                    weights = session.run(variables)
                else:
                    for variable, value in zip(variables, weights):
                        variable.load(value, session)
                feed = np.random.default_rng(0).random((3, 784), dtype=np.float32)
                logits[name] = session.run(output, {images: feed})
    assert not np.allclose(logits["cnn_2c2d"], logits["cnn_p1"], atol=1e-3)


def test_weights_are_glorot_uniform_and_biases_zero():
    _, variables = _build("mlp", {})
    first = variables["model/mlp/hidden_0/weights"]
    limit = math.sqrt(6 / (784 + 128))
    assert np.abs(first).max() <= limit
    # A uniform on [-limit, limit] has standard deviation limit/√3.
    assert first.std() == pytest.approx(limit / math.sqrt(3), rel=0.02)
    assert all(not np.any(value) for key, value in variables.items() if key.endswith("biases"))


def test_unknown_model_or_parameter_is_a_config_error():
    # Names and params are checked once, by the schema; the builder checks only its input tensor.
    with pytest.raises(ConfigError, match="unknown model name 'resnet'"):
        ModelConfig.parse({"name": "resnet"})
    with pytest.raises(ConfigError, match=r"params.width: unknown parameter"):
        ModelConfig.parse({"name": "mlp", "params": {"width": 3}})
    graph = tf.Graph()
    with graph.as_default():
        with pytest.raises(ConfigError, match="expected a \\[batch, 784\\] tensor"):
            models.build_model(ModelConfig(name="logreg"), tf.placeholder(tf.float32, [None, 28, 28]))


def test_the_inference_path_holds_only_the_named_inference_tensors():
    graph = tf.Graph()
    with graph.as_default():
        models.inference_path(ModelConfig(name="mlp", params={"hidden": [8]}), reuse=False)
        assert sorted(v.op.name for v in tf.global_variables()) == [
            "model/mlp/hidden_0/biases",
            "model/mlp/hidden_0/weights",
            "model/mlp/output/biases",
            "model/mlp/output/weights",
        ]
        tensors = {name: graph.get_tensor_by_name(f"{name}:0") for name in models.INFERENCE_TENSORS}
        assert tensors["images"].dtype == tf.uint8 and tensors["labels"].dtype == tf.int64
        assert tensors["predictions"].dtype == tf.int64 and tensors["logits"].shape.as_list() == [None, 10]
        op_types = {op.type for op in graph.get_operations()}
        # Nothing of training: no gradients, no optimizer updates, no resident data.
        assert not any("Apply" in kind or "Grad" in kind for kind in op_types)
        assert not [op.name for op in graph.get_operations() if op.name.startswith(("gradients", "data/", "train"))]
        with tf.Session() as session:
            session.run(tf.global_variables_initializer())
            images = np.zeros((4, 784), np.uint8)
            loss, accuracy, predictions = session.run(
                [tensors["loss"], tensors["accuracy"], tensors["predictions"]],
                {tensors["images"]: images, tensors["labels"]: np.zeros(4, np.int64)},
            )
    # Zero images and zero biases: all logits are 0, so the loss is ln 10 and argmax is class 0.
    assert loss == pytest.approx(math.log(10), rel=1e-6)
    assert predictions.tolist() == [0, 0, 0, 0] and accuracy == 1.0
