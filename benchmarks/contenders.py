"""The training loops benchmarks/train_throughput.py compares, each run inside a worker process (workers.py).

(a) feed_dict, (b) keras, (c) project, and a run's own settings for full_report.py's rate probe; the bounds
(d) are in bounds.py. See train_throughput.py.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))  # run from a checkout without installing

LEARNING_RATES = {"sgd": 0.1, "adam": 0.001, "msvag": 0.1, "svag": 0.1}
MODELS = {  # model → (builder params, batch size)
    "mlp": ({"hidden": [128, 128]}, 64),
    "cnn_2c2d": ({}, 128),
}


def load_rows(train_arrow: str, split_arrow: str):
    """The project's training rows (uint8 images, int32 labels), as tasks.training.loop selects them."""
    from tasks.training.runstate import load_split

    split = load_split(Path(train_arrow), Path(split_arrow))
    return split.images[split.train_rows], split.labels[split.train_rows]


def feed_dict_epoch(job: dict) -> float:
    """(a): examples/s of one epoch of the original style's loop."""
    import numpy as np

    from tasks.core.config import ModelConfig
    from tasks.core.runs import OptimizerSettings
    from tasks.training.models import build_model
    from tasks.training.optimizers import make_optimizer
    from tasks.training.tf1 import tf

    images, labels = load_rows(job["train_arrow"], job["split_arrow"])
    images = images.astype(np.float32) / 255.0  # the original kept scaled float arrays in memory
    labels = labels.astype(np.int64)
    batch = job["batch_size"]
    steps = len(labels) // batch
    graph = tf.Graph()
    with graph.as_default():
        tf.set_random_seed(0)
        x = tf.placeholder(tf.float32, [None, 784], name="x")
        y = tf.placeholder(tf.int64, [None], name="y")
        logits = build_model(ModelConfig(name=job["model"], params=job["model_params"]), x)
        loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits))
        optimizer = OptimizerSettings(name=job["optimizer"], learning_rate=LEARNING_RATES[job["optimizer"]])
        train_op = make_optimizer(optimizer).minimize(loss)
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


def keras_epoch(job: dict) -> float:
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

    images, labels = load_rows(job["train_arrow"], job["split_arrow"])
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


def project_epoch(job: dict) -> float:
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
    return settings_epoch({**job, "settings": settings})


def settings_epoch(job: dict) -> float:
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


def subset_arrays(train_arrow: Path, split_arrow: Path, rows: int, folder: Path) -> tuple[Path, Path]:
    """A train.arrow/split pair whose training rows are the first `rows` of the real training rows."""
    import numpy as np

    from tasks.data.arrays import write_arrays, write_indices
    from tasks.training.runstate import load_split

    split = load_split(Path(train_arrow), Path(split_arrow))
    training, held_out = split.train_rows[:rows], np.sort(split.val_rows)[:1000]
    keep = np.concatenate([training, held_out])
    write_arrays(folder / "train.arrow", split.images[keep], split.labels[keep])
    write_indices(folder / "split.arrow", np.arange(len(training), len(keep)))
    return folder / "train.arrow", folder / "split.arrow"
