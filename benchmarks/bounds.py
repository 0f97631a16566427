"""Column (d) of benchmarks/train_throughput.py: what bounds the project's loop on this machine.

MLP: the step's matrix products alone; CNN: the bare conv net. Each runs in an in-graph loop on a bank of
real batches, timed once after a warm-up call, as every contender is.
"""

from __future__ import annotations

import time

from contenders import LEARNING_RATES, load_rows  # beside this script


def matmul_bound(job: dict) -> float:
    """(d), MLP: examples/s if a step were its matrix products alone (the forward 3, the backward 5).

    They run in an in-graph loop with nothing else (no gather, loss, update), on a bank of real batches:
    an upper bound for any loop on this machine, and the reason (c) cannot be much faster. One timed
    epoch's worth of steps after a warm-up call, as every other contender.
    """
    import numpy as np

    from tasks.training.tf1 import tf

    images, labels = load_rows(job["train_arrow"], job["split_arrow"])
    batch, sizes = job["batch_size"], [784, *job["model_params"]["hidden"], 10]
    banked = max(1, min(8, len(labels) // batch))  # batches in the bank
    bank = images[: batch * banked].astype(np.float32).reshape(banked, batch, 784) / 255.0
    steps = len(labels) // batch
    graph = tf.Graph()
    with graph.as_default():
        rng = np.random.default_rng(0)
        weights = [
            tf.constant(rng.normal(0, 0.05, (fan_in, fan_out)).astype(np.float32))
            for fan_in, fan_out in zip(sizes[:-1], sizes[1:])
        ]
        batches = tf.constant(bank)

        def step(index, total):
            activations = [tf.gather(batches, index % banked)]
            for weight in weights:
                activations.append(tf.matmul(activations[-1], weight))
            delta, products = activations[-1], []
            for layer in range(len(weights) - 1, -1, -1):
                products.append(tf.matmul(activations[layer], delta, transpose_a=True))  # dW
                if layer > 0:
                    delta = tf.matmul(delta, weights[layer], transpose_b=True)  # dX
                    products.append(delta)
            return index + 1, total + tf.add_n([product[0, 0] for product in products])

        count = tf.placeholder(tf.int32, [])
        loop = tf.while_loop(
            lambda index, total: index < count, step, [tf.constant(0), tf.constant(0.0)], parallel_iterations=1
        )
    return _timed_loop(graph, loop, count, steps, batch, job["threads"])


def conv_bound(job: dict) -> float:
    """(d), CNN: examples/s of the bare conv net: the same layers (tasks.training.models), forward,
    backward and the SGD update, in an in-graph loop over a bank of real batches. No data path (no
    gather of rows, no uint8 scaling), no metrics, no NaN check: what the project's step adds to it is
    what (c)/(d) measures.
    """
    import numpy as np

    from tasks.core.config import ModelConfig
    from tasks.training.models import MODEL_SCOPE, build_model
    from tasks.training.tf1 import tf

    images, labels = load_rows(job["train_arrow"], job["split_arrow"])
    batch = job["batch_size"]
    banked = max(1, min(8, len(labels) // batch))
    bank = images[: batch * banked].astype(np.float32).reshape(banked, batch, 784) / 255.0
    bank_labels = labels[: batch * banked].astype(np.int64).reshape(banked, batch)
    steps = len(labels) // batch
    model = ModelConfig(name=job["model"], params=job["model_params"])
    graph = tf.Graph()
    with graph.as_default():
        tf.set_random_seed(0)
        with tf.variable_scope(MODEL_SCOPE):  # the variables, made outside the loop as the project does
            build_model(model, tf.zeros([1, 784]))
        variables = tf.trainable_variables()
        batches, batch_labels = tf.constant(bank), tf.constant(bank_labels)
        optimizer = tf.train.GradientDescentOptimizer(LEARNING_RATES["sgd"])

        def step(index, total):
            with tf.variable_scope(MODEL_SCOPE, reuse=True):
                logits = build_model(model, tf.gather(batches, index % banked))
            loss = tf.reduce_mean(
                tf.nn.sparse_softmax_cross_entropy_with_logits(
                    labels=tf.gather(batch_labels, index % banked), logits=logits
                )
            )
            with tf.control_dependencies([optimizer.minimize(loss, var_list=variables)]):
                return index + 1, total + loss

        count = tf.placeholder(tf.int32, [])
        loop = tf.while_loop(
            lambda index, total: index < count, step, [tf.constant(0), tf.constant(0.0)], parallel_iterations=1
        )
        init = tf.global_variables_initializer()
    return _timed_loop(graph, loop, count, steps, batch, job["threads"], init)


def _timed_loop(graph, loop, count, steps: int, batch: int, threads: int, init=None) -> float:
    """examples/s of one call of `loop` running `steps` steps, after a one-step warm-up call."""
    from tasks.training.tf1 import tf

    config = tf.ConfigProto(intra_op_parallelism_threads=threads, inter_op_parallelism_threads=1)
    with tf.Session(graph=graph, config=config) as session:
        if init is not None:
            session.run(init)
        session.run(loop, {count: 1})
        seconds = _timed(session.run, loop, {count: steps})
    return steps * batch / seconds


def _timed(function, *args) -> float:
    started = time.perf_counter()
    function(*args)
    return time.perf_counter() - started
