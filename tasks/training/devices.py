"""The session side of `[pipeline] device`: which device a training or evaluation session uses, and its config.

- cpu: the session creates no GPU device (`device_count {GPU: 0}`). This works per session, after TensorFlow
  was imported (once per process, by tasks.training.tf1), which CUDA_VISIBLE_DEVICES would not.
- gpu: TensorFlow places every op that has a GPU kernel on its first visible GPU, the others on the CPU;
  soft placement lets a colocation group with no common GPU kernel fall back to the CPU instead of failing.
  Memory grows as needed instead of being reserved whole, so several runs can share a GPU. Op determinism
  is switched on (enable_op_determinism, from TF's v2 API: compat.v1 lacks it), so a run repeats to the
  same weights on the same GPU; an op with no deterministic GPU kernel then fails the run. It is switched
  on for GPU sessions only: on the CPU it changes which kernels run, and with them the weights, so CPU runs
  stay bit-identical to those trained before this setting existed.

Import lazily: it loads TensorFlow. None of the GPU branch has run on a GPU (none was available).
"""

from __future__ import annotations

from tasks.core.devices import CPU, resolve_device
from tasks.training import kernels
from tasks.training.tf1 import enable_op_determinism, list_gpus, tf

GPUS: tuple[str, ...] | None = None  # the GPUs TensorFlow lists, queried on first use in this process


def visible_gpus() -> tuple[str, ...]:
    global GPUS  # noqa: PLW0603 - a once-per-process cache that tests may set
    if GPUS is None:
        GPUS = list_gpus()
    return GPUS


def usable_device(setting: str) -> str:
    """The device `setting` resolves to on this host; a ConfigError when it asks for a GPU TF does not see."""
    return resolve_device(setting, visible_gpus())


def session_config(setting: str, intra_op_threads: int, inter_op_threads: int) -> tuple[tf.ConfigProto, str]:
    """(the session's ConfigProto, the device used: "cpu" or TF's name of the GPU) for `[pipeline] device`."""
    device = usable_device(setting)
    if device != CPU:
        enable_op_determinism()  # process-wide: every session of a GPU process
        kernels.forbid("this process trains on a GPU, and the fused M-SVAG/SVAG op has CPU kernels only")
    return device_config(device, intra_op_threads, inter_op_threads), device


def device_config(device: str, intra_op_threads: int, inter_op_threads: int) -> tf.ConfigProto:
    """The ConfigProto of a session on `device` (a resolved one: "cpu" or a GPU's name)."""
    config = tf.ConfigProto(
        intra_op_parallelism_threads=intra_op_threads, inter_op_parallelism_threads=inter_op_threads
    )
    if device == CPU:
        config.device_count["GPU"] = 0
    else:
        config.allow_soft_placement = True
        config.gpu_options.allow_growth = True
    return config
