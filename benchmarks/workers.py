"""Worker processes for the benchmarks: one per TensorFlow mode, serving contender jobs from the parent.

Keras needs TF2 behaviour and the project's graph code turns it off (tasks.training.tf1), so the two never
share a process.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
from typing import Any

from bounds import conv_bound, matmul_bound  # beside this script
from contenders import REPO_ROOT, feed_dict_epoch, keras_epoch, project_epoch, settings_epoch

CONTENDERS = {
    "feed_dict": feed_dict_epoch,
    "keras": keras_epoch,
    "project": project_epoch,
    "matmul_bound": matmul_bound,
    "conv_bound": conv_bound,
    "settings_epoch": settings_epoch,
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
