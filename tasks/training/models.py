"""Graph builders for the test problems, TF1 style (compat.v1, no Keras, no tf.layers).

Each builder takes a float32 [batch, 784] tensor scaled to [0, 1], creates its own variables with
`tf.get_variable` inside its own variable scope, and returns logits [batch, 10]. Training and
evaluation call the same builder; the caller decides on variable reuse through the enclosing scope.

All weights are Glorot-uniform and all biases zero, for every model, so that the problems differ
only in their architecture.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from tasks.core.config import ModelConfig
from tasks.core.errors import ConfigError
from tasks.data.dataset import IMAGE_COLS, IMAGE_PIXELS, IMAGE_ROWS, NUM_CLASSES
from tasks.training.tf1 import tf


def _dense(inputs: tf.Tensor, units: int, scope: str) -> tf.Tensor:
    """An affine layer: inputs @ weights + biases (no activation)."""
    with tf.variable_scope(scope):
        fan_in = int(inputs.shape[-1])
        weights = tf.get_variable("weights", [fan_in, units], tf.float32, tf.glorot_uniform_initializer())
        biases = tf.get_variable("biases", [units], tf.float32, tf.zeros_initializer())
        return tf.nn.bias_add(tf.matmul(inputs, weights), biases)


def _conv_relu_pool(inputs: tf.Tensor, filters: int, pool_size: int, scope: str) -> tf.Tensor:
    """5×5 'same' convolution, ReLU, then pool_size×pool_size 'same' max-pool with stride 2 (NHWC)."""
    with tf.variable_scope(scope):
        channels = int(inputs.shape[-1])
        kernel = tf.get_variable("weights", [5, 5, channels, filters], tf.float32, tf.glorot_uniform_initializer())
        biases = tf.get_variable("biases", [filters], tf.float32, tf.zeros_initializer())
        conv = tf.nn.bias_add(tf.nn.conv2d(inputs, kernel, strides=[1, 1, 1, 1], padding="SAME"), biases)
        return tf.nn.max_pool2d(tf.nn.relu(conv), ksize=pool_size, strides=2, padding="SAME")


def _two_conv_two_dense(images: tf.Tensor, pool_size: int) -> tf.Tensor:
    """conv 32@5×5 → pool → conv 64@5×5 → pool → dense 1024 (ReLU) → dense 10, pools of stride 2.

    'Same' pooling with stride 2 halves 28 → 14 → 7 whatever the window, so the parameter count,
    3,274,634, does not depend on `pool_size`.
    """
    pixels = tf.reshape(images, [-1, IMAGE_ROWS, IMAGE_COLS, 1])
    features = _conv_relu_pool(pixels, 32, pool_size, "conv_0")
    features = _conv_relu_pool(features, 64, pool_size, "conv_1")
    flat = tf.reshape(features, [-1, int(features.shape[1]) * int(features.shape[2]) * int(features.shape[3])])
    hidden = tf.nn.relu(_dense(flat, 1024, "dense_0"))
    return _dense(hidden, NUM_CLASSES, "output")


def logreg(images: tf.Tensor) -> tf.Tensor:
    """Multinomial logistic regression: one affine map 784 → 10."""
    with tf.variable_scope("logreg"):
        return _dense(images, NUM_CLASSES, "output")


def mlp(images: tf.Tensor, hidden: Sequence[int] = (128, 128)) -> tf.Tensor:
    """Fully connected ReLU network; the default is the original project's 784-128-128-10."""
    with tf.variable_scope("mlp"):
        activations = images
        for index, units in enumerate(hidden):
            activations = tf.nn.relu(_dense(activations, int(units), f"hidden_{index}"))
        return _dense(activations, NUM_CLASSES, "output")


def cnn_2c2d(images: tf.Tensor) -> tf.Tensor:
    """DeepOBS fmnist_2c2d: two conv layers (2×2 max-pools) and two dense layers, 3,274,634 parameters."""
    with tf.variable_scope("cnn_2c2d"):
        return _two_conv_two_dense(images, pool_size=2)


def cnn_p1(images: tf.Tensor) -> tf.Tensor:
    """Problem P1 of Balles & Hennig (2018, arXiv:1705.07774): cnn_2c2d with 3×3 max-pools of stride 2."""
    with tf.variable_scope("cnn_p1"):
        return _two_conv_two_dense(images, pool_size=3)


MODEL_BUILDERS: dict[str, Callable[..., tf.Tensor]] = {
    "logreg": logreg,
    "mlp": mlp,
    "cnn_2c2d": cnn_2c2d,
    "cnn_p1": cnn_p1,
}


def build_model(model: ModelConfig, images: tf.Tensor) -> tf.Tensor:
    """Logits of `model` (its schema-checked name and params) on `images` (float32 [batch, 784] in [0, 1])."""
    if images.shape.ndims != 2 or (images.shape[1] is not None and int(images.shape[1]) != IMAGE_PIXELS):
        raise ConfigError(f"model input: expected a [batch, {IMAGE_PIXELS}] tensor, found shape {images.shape}")
    params = dict(model.params)
    if "hidden" in params:
        params["hidden"] = tuple(params["hidden"])  # JSON settings carry lists
    return MODEL_BUILDERS[model.name](images, **params)


# The scope every model's variables live under; checkpoints use the same names.
MODEL_SCOPE = "model"
# The named tensors of the inference path (see `inference_path`), which evaluation and validation use.
INFERENCE_TENSORS = ("images", "labels", "logits", "loss", "accuracy", "predictions")


def scale_images(images: tf.Tensor) -> tf.Tensor:
    """uint8 pixels → float32 in [0, 1]; training and inference share it, so both see the same numbers."""
    return tf.cast(images, tf.float32) / 255.0


def classification_head(logits: tf.Tensor, labels: tf.Tensor) -> dict[str, tf.Tensor]:
    """Mean softmax cross-entropy, argmax predictions (int64), per-example correctness and accuracy."""
    predictions = tf.argmax(logits, axis=1, output_type=tf.int64)
    loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits))
    correct = tf.equal(predictions, tf.cast(labels, tf.int64))
    return {
        "predictions": predictions,
        "loss": loss,
        "correct_count": tf.reduce_sum(tf.cast(correct, tf.int64)),
        "accuracy": tf.reduce_mean(tf.cast(correct, tf.float32)),
    }


def inference_path(model: ModelConfig, reuse: bool) -> dict[str, tf.Tensor]:
    """Placeholders `images` (uint8 [N, 784]) and `labels` (int64 [N]) → named `logits`, `loss`,
    `accuracy`, `predictions`, at the graph's root, on the variables under MODEL_SCOPE."""
    images = tf.placeholder(tf.uint8, [None, IMAGE_PIXELS], name="images")
    labels = tf.placeholder(tf.int64, [None], name="labels")
    with tf.variable_scope(MODEL_SCOPE, reuse=reuse):
        logits = build_model(model, scale_images(images))
    head = classification_head(logits, labels)
    return {
        "images": images,
        "labels": labels,
        "logits": tf.identity(logits, name="logits"),
        "loss": tf.identity(head["loss"], name="loss"),
        "accuracy": tf.identity(head["accuracy"], name="accuracy"),
        "predictions": tf.identity(head["predictions"], name="predictions"),
    }
