"""The contenders of benchmarks/train_throughput.py, each run inside a worker process of its own.

(a) feed_dict, (b) keras, (c) project, (d) matmul_bound (MLP) or conv_bound (CNN): see train_throughput.py.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))  # run from a checkout without installing

LEARNING_RATES = {"sgd": 0.1, "adam": 0.001, "msvag": 0.1, "svag": 0.1}
MODELS = {  # model → (builder params, batch size)
    "mlp": ({"hidden": [128, 128]}, 64),
    "cnn_2c2d": ({}, 128),
}


def _load_rows(train_arrow: str, split_arrow: str):
    """The project's training rows (uint8 images, int32 labels), as tasks.training.loop selects them."""
    from tasks.training.runstate import load_split

    split = load_split(Path(train_arrow), Path(split_arrow))
    return split.images[split.train_rows], split.labels[split.train_rows]


def _feed_dict_epoch(job: dict) -> float:
    """(a): examples/s of one epoch of the original style's loop."""
    import numpy as np

    from tasks.training.models import build_model
    from tasks.training.optimizers import make_optimizer
    from tasks.training.tf1 import tf

    images, labels = _load_rows(job["train_arrow"], job["split_arrow"])
    images = images.astype(np.float32) / 255.0  # the original kept scaled float arrays in memory
    labels = labels.astype(np.int64)
    batch = job["batch_size"]
    steps = len(labels) // batch
    graph = tf.Graph()
    with graph.as_default():
        tf.set_random_seed(0)
        x = tf.placeholder(tf.float32, [None, 784], name="x")
        y = tf.placeholder(tf.int64, [None], name="y")
        logits = build_model(job["model"], x, job["model_params"])
        loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits))
        train_op = make_optimizer(job["optimizer"], LEARNING_RATES[job["optimizer"]], {}).minimize(loss)
        init = tf.global_variables_initializer()
    config = tf.ConfigProto(intra_op_parallelism_threads=job["threads"], inter_op_parallelism_threads=1)
    rng = np.random.default_rng(0)
    with tf.Session(graph=graph, config=config) as session:
        session.run(init)
        for _ in range(5):  # warm-up: first-run allocations and graph pruning
            session.run([train_op, loss], {x: images[:batch], y: labels[:batch]})
        started = time.perf_counter()
        order = rng.permutation(len(labels))
        for step in range(steps):
            rows = order[step * batch : (step + 1) * batch]
            session.run([train_op, loss], {x: images[rows], y: labels[rows]})
        seconds = time.perf_counter() - started
    return steps * batch / seconds


def _keras_epoch(job: dict) -> float:
    """(b): examples/s of one `model.fit` epoch, on equal terms with (c).

    `steps_per_execution` is the project loop's chunk (CHUNK_STEPS steps per call), and the input
    pipeline is built before the clock starts: the rows are one resident tensor, and each epoch
    shuffles positions and gathers each batch, as Keras's own adapter does for in-memory arrays. The
    last partial batch is dropped, as the project does; the trace happens in the warm-up.
    """
    import numpy as np
    import tensorflow as tf
    import tf_keras as keras

    from tasks.training import CHUNK_STEPS  # not tasks.training.graph: it would switch TF to graph mode

    images, labels = _load_rows(job["train_arrow"], job["split_arrow"])
    images = images.astype(np.float32) / 255.0
    labels = labels.astype(np.int64)
    if job["model"] == "mlp":
        layers = [keras.layers.Dense(units, activation="relu") for units in job["model_params"]["hidden"]]
    else:
        conv = dict(kernel_size=5, padding="same", activation="relu")
        layers = [
            keras.layers.Reshape((28, 28, 1)),
            keras.layers.Conv2D(32, **conv),
            keras.layers.MaxPool2D(2, 2, padding="same"),
            keras.layers.Conv2D(64, **conv),
            keras.layers.MaxPool2D(2, 2, padding="same"),
            keras.layers.Flatten(),
            keras.layers.Dense(1024, activation="relu"),
        ]
    model = keras.Sequential([keras.Input((784,))] + layers + [keras.layers.Dense(10)])
    optimizer = {"sgd": keras.optimizers.SGD, "adam": keras.optimizers.Adam}[job["optimizer"]]
    model.compile(
        optimizer=optimizer(LEARNING_RATES[job["optimizer"]]),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        steps_per_execution=CHUNK_STEPS,
    )
    batch = job["batch_size"]
    steps = len(labels) // batch
    resident_images, resident_labels = tf.constant(images), tf.constant(labels)

    def epoch_of(rows: int):
        positions = tf.data.Dataset.range(rows).shuffle(rows, seed=0).batch(batch, drop_remainder=True)
        return positions.map(lambda p: (tf.gather(resident_images, p), tf.gather(resident_labels, p))).prefetch(2)

    warm_up, epoch = epoch_of(min(batch * CHUNK_STEPS, len(labels))), epoch_of(len(labels))
    model.fit(warm_up, epochs=1, verbose=0)  # traces the train function (same shapes as the epoch)
    started = time.perf_counter()
    model.fit(epoch, epochs=1, verbose=0)
    return steps * batch / (time.perf_counter() - started)


def _project_epoch(job: dict) -> float:
    """(c): `examples_per_second` of one epoch of tasks.training.loop.train_run."""
    from tasks.core.config import parse_config
    from tasks.core.runs import run_settings

    config = parse_config(
        {
            "experiment": "bench",
            "model": {"name": job["model"], "params": job["model_params"]},
            "training": {"epochs": 1, "batch_size": job["batch_size"]},
            "seeds": [0],
            "optimizers": [{"name": job["optimizer"], "learning_rate": LEARNING_RATES[job["optimizer"]]}],
        }
    )
    settings = run_settings(config, config.optimizers[0], LEARNING_RATES[job["optimizer"]]).as_dict()
    return _settings_epoch({**job, "settings": settings})


def _settings_epoch(job: dict) -> float:
    """`examples_per_second` of one epoch of train_run for a run's own settings (its epochs set to 1)."""
    from tasks.training.loop import train_run

    settings = dict(job["settings"])
    settings["training"] = {**settings["training"], "epochs": 1}
    with tempfile.TemporaryDirectory(prefix="train-bench-") as temp:
        record = train_run(
            settings,
            0,
            Path(job["train_arrow"]),
            Path(job["split_arrow"]),
            Path(temp) / "run",
            intra_op_threads=job["threads"],
            inter_op_threads=1,
        )
    return record["examples_per_second"]


def _matmul_bound(job: dict) -> float:
    """(d), MLP: examples/s if a step were its matrix products alone (the forward 3, the backward 5).

    They run in an in-graph loop with nothing else (no gather, loss, update), on a bank of real batches:
    an upper bound for any loop on this machine, and the reason (c) cannot be much faster. One timed
    epoch's worth of steps after a warm-up call, as every other contender.
    """
    import numpy as np

    from tasks.training.tf1 import tf

    images, labels = _load_rows(job["train_arrow"], job["split_arrow"])
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


def _conv_bound(job: dict) -> float:
    """(d), CNN: examples/s of the bare conv net: the same layers (tasks.training.models), forward,
    backward and the SGD update, in an in-graph loop over a bank of real batches. No data path (no
    gather of rows, no uint8 scaling), no metrics, no NaN check: what the project's step adds to it is
    what (c)/(d) measures.
    """
    import numpy as np

    from tasks.training.models import MODEL_SCOPE, build_model
    from tasks.training.tf1 import tf

    images, labels = _load_rows(job["train_arrow"], job["split_arrow"])
    batch = job["batch_size"]
    banked = max(1, min(8, len(labels) // batch))
    bank = images[: batch * banked].astype(np.float32).reshape(banked, batch, 784) / 255.0
    bank_labels = labels[: batch * banked].astype(np.int64).reshape(banked, batch)
    steps = len(labels) // batch
    graph = tf.Graph()
    with graph.as_default():
        tf.set_random_seed(0)
        with tf.variable_scope(MODEL_SCOPE):  # the variables, made outside the loop as the project does
            build_model(job["model"], tf.zeros([1, 784]), job["model_params"])
        variables = tf.trainable_variables()
        batches, batch_labels = tf.constant(bank), tf.constant(bank_labels)
        optimizer = tf.train.GradientDescentOptimizer(LEARNING_RATES["sgd"])

        def step(index, total):
            with tf.variable_scope(MODEL_SCOPE, reuse=True):
                logits = build_model(job["model"], tf.gather(batches, index % banked), job["model_params"])
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


def subset_arrays(train_arrow: Path, split_arrow: Path, rows: int, folder: Path) -> tuple[Path, Path]:
    """A train.arrow/split pair whose training rows are the first `rows` of the real training rows."""
    import numpy as np

    from tasks.data.arrays import load_arrays, load_indices, write_arrays, write_indices

    images, labels = load_arrays(train_arrow)
    validation = load_indices(split_arrow)
    is_training = np.ones(len(labels), dtype=bool)
    is_training[validation] = False
    training, held_out = np.flatnonzero(is_training)[:rows], np.sort(validation)[:1000]
    keep = np.concatenate([training, held_out])
    write_arrays(folder / "train.arrow", images[keep], labels[keep])
    write_indices(folder / "split.arrow", np.arange(len(training), len(keep)))
    return folder / "train.arrow", folder / "split.arrow"


def _timed(function, *args) -> float:
    started = time.perf_counter()
    function(*args)
    return time.perf_counter() - started


CONTENDERS = {
    "feed_dict": _feed_dict_epoch,
    "keras": _keras_epoch,
    "project": _project_epoch,
    "matmul_bound": _matmul_bound,
    "conv_bound": _conv_bound,
    "settings_epoch": _settings_epoch,
}


def _worker(connection: Any, tf2: bool, threads: int) -> None:
    """Serve jobs from the parent until None; one process per TF mode (Keras needs TF2 behaviour)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.path.insert(0, str(REPO_ROOT))
    if tf2:
        import tensorflow as tf

        tf.get_logger().setLevel("ERROR")
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    while True:
        job = connection.recv()
        if job is None:
            return
        try:
            connection.send(("ok", CONTENDERS[job["contender"]](job)))
        except Exception as exc:  # reported by the parent, which stops
            connection.send(("error", f"{type(exc).__name__}: {exc}"))


class Worker:
    def __init__(self, tf2: bool, threads: int):
        context = multiprocessing.get_context("spawn")
        self.connection, child = context.Pipe()
        self.process = context.Process(target=_worker, args=(child, tf2, threads), daemon=True)
        self.process.start()

    def run(self, job: dict) -> float:
        self.connection.send(job)
        status, value = self.connection.recv()
        if status != "ok":
            raise RuntimeError(f"{job['contender']} {job['model']} {job['optimizer']}: {value}")
        return value

    def close(self) -> None:
        try:
            self.connection.send(None)
        except OSError:
            pass  # it already ended
        self.process.join(timeout=30)
