"""The one place that imports TensorFlow: `from tasks.training.tf1 import tf` gives `tensorflow.compat.v1`.

Graph mode (v2 behaviour off: ref variables, sessions), and quiet: TF's C++ INFO and WARNING lines are
hidden unless `TF_CPP_MIN_LOG_LEVEL` is already set (it only counts when set before the import), and
so are the Python deprecation warnings that compat.v1 logs on first use of an API.

Lean: `import tensorflow` eagerly imports the Keras package (TF's __init__ does it "so that
registrations happen", and Keras pulls in matplotlib.pyplot): about 1.1 s and 50 MB per process on
the 2-core machine, in every TrainRun and EvaluateRun. The product uses no Keras, so `keras` and
`tf_keras` are made unimportable for the duration of the TF import only; TF catches that ImportError,
and `tf.keras` still loads lazily if anything asks for it later.

Import this module lazily (inside functions, or from modules that only `run()` methods import):
scheduling a finished DAG must not load TensorFlow.
"""

from __future__ import annotations

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

KERAS_PACKAGES = ("keras", "tf_keras")


def _import_compat_v1():
    blocked = [name for name in KERAS_PACKAGES if name not in sys.modules]
    for name in blocked:
        sys.modules[name] = None  # `import keras` now raises ImportError, which TF's __init__ catches
    try:
        import tensorflow.compat.v1 as tf_v1
    finally:
        for name in blocked:
            if name in sys.modules and sys.modules[name] is None:
                del sys.modules[name]
    package = sys.modules["tensorflow"]
    # TF put the (then unfindable) Keras folders on its __path__ as None; keep only real folders.
    package.__path__[:] = [folder for folder in package.__path__ if folder is not None]
    return tf_v1


tf = _import_compat_v1()
tf.get_logger().setLevel("ERROR")  # first: disable_v2_behavior itself logs a deprecation warning
tf.disable_v2_behavior()

__all__ = ["tf"]
