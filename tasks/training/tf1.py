"""The one place that imports TensorFlow: `from tasks.training.tf1 import tf` gives `tensorflow.compat.v1`.

Graph mode (v2 behaviour off: ref variables, sessions), and quiet: TF's C++ INFO and WARNING lines are
hidden unless `TF_CPP_MIN_LOG_LEVEL` is already set (it only counts when set before the import), and
so are the Python deprecation warnings that compat.v1 logs on first use of an API.

Lean: `import tensorflow` eagerly imports the Keras package (TF's __init__ does it "so that
registrations happen", and Keras pulls in matplotlib.pyplot): about 1.1 s and 50 MB per process on
the 2-core machine, in every TrainRun and EvaluateRun. The product uses no Keras, so `keras` and
`tf_keras` are made unimportable for the duration of the TF import only; TF catches that ImportError,
and `tf.keras` still loads lazily if anything asks for it later.

Silent on a CPU-only machine: TF's native libraries print their start-up notices ("Could not find cuda
drivers", "failed call to cuInit", the oneDNN notice) through absl before its log level applies, so
TF_CPP_MIN_LOG_LEVEL cannot hide them. The import and the first device query (`list_gpus`, which calls
cuInit; never at import, see there) run with file descriptor 2 captured; afterwards every captured line
is written back to stderr except those known notices, so a warning that matters still shows.

Import this module lazily (inside functions, or from modules that only `run()` methods import):
scheduling a finished DAG must not load TensorFlow.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

KERAS_PACKAGES = ("keras", "tf_keras")
START_UP_NOISE = re.compile(
    r"All log messages before absl::InitializeLog|Could not find cuda drivers|failed call to cuInit"
    r"|oneDNN custom operations are on|Unable to register cu(DNN|FFT|BLAS) factory|TF-TRT Warning"
    r"|This TensorFlow binary is optimized to use available CPU instructions|rebuild TensorFlow with"
)


@contextlib.contextmanager
def without_start_up_noise():
    """Capture fd 2 (native code writes there directly), then pass on every line but the known notices."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            for line in captured.read().decode("utf-8", "replace").splitlines():
                if line.strip() and not START_UP_NOISE.search(line):
                    print(line, file=sys.stderr)


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


with without_start_up_noise():
    tf = _import_compat_v1()
    tf.get_logger().setLevel("ERROR")  # first: disable_v2_behavior itself logs a deprecation warning
    tf.disable_v2_behavior()


def list_gpus() -> tuple[str, ...]:
    """TensorFlow's physical GPU names: the first call initialises the devices (cuInit), quietly.

    Not at import: a Luigi worker imports this module before it forks its tasks (pipeline/warm.py), and a
    CUDA context made before a fork is unusable in the child. Each task's process queries its own devices.
    """
    with without_start_up_noise():
        return tuple(device.name for device in tf.config.list_physical_devices("GPU"))


def enable_op_determinism() -> None:
    """TensorFlow's process-wide switch to deterministic kernels; compat.v1 does not export it, the v2 API does."""
    sys.modules["tensorflow"].config.experimental.enable_op_determinism()


_TF_BOILERPLATE = ("Graph execution error", "Detected at node", "Node:", "[[", "(most recent call last)")


def tf_error_text(exc: BaseException) -> str:
    """The one informative line of a TensorFlow error, without its node dump, for our own messages."""
    text = getattr(exc, "message", None) or str(exc)
    lines = [line.strip() for line in text.splitlines()]
    useful = [line for line in lines if line and not any(marker in line for marker in _TF_BOILERPLATE)]
    return f"{type(exc).__name__}: {useful[0][:300] if useful else 'no detail'}"


__all__ = ["enable_op_determinism", "list_gpus", "tf", "tf_error_text"]
