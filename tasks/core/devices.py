"""The `[pipeline] device` site setting (auto | cpu | gpu) and what it means, without TensorFlow.

Two views of "does this host have a GPU" exist, and each is used where it can be had:
- at scheduling time (no TensorFlow may load), the NVIDIA device nodes `/dev/nvidia<N>`, limited by
  `CUDA_VISIBLE_DEVICES`: it only sizes a run's luigid resources (pipeline.training.run_resources);
- when a run starts, the GPUs TensorFlow itself lists (tasks.training.devices.visible_gpus): it decides the device
  the session uses (resolve_device), so a wrong guess at scheduling time changes a cap, never a result.
"""

from __future__ import annotations

import os
import platform
from collections.abc import Mapping, Sequence
from pathlib import Path

from tasks.core.errors import ConfigError

DEVICE_SETTINGS = ("auto", "cpu", "gpu")
CPU = "cpu"


def check_device_setting(value: object) -> str:
    """The setting itself; a ConfigError names the key, the values allowed and the value found."""
    if value not in DEVICE_SETTINGS:
        raise ConfigError(
            f"[pipeline] device: expected one of {', '.join(DEVICE_SETTINGS)}, found {value!r}; fix it in luigi.cfg "
            "(auto uses a GPU when TensorFlow sees one)"
        )
    return str(value)


def wants_gpu(setting: str, gpus_seen: int) -> bool:
    """The one rule: `gpu` always wants a GPU, `auto` when one is seen, `cpu` (or anything else) never."""
    return setting == "gpu" or (setting == "auto" and gpus_seen > 0)


def resolve_device(setting: str, gpus: Sequence[str]) -> str:
    """The device a session uses: "cpu", or the name of the first GPU TensorFlow lists (where it places ops).

    `gpus` are TensorFlow's physical GPU names. `gpu` on a host where TensorFlow sees none is a ConfigError,
    raised before anything is trained or written.
    """
    setting = check_device_setting(setting)
    if setting == "gpu" and not gpus:
        raise ConfigError(
            f"[pipeline] device: gpu needs a GPU, but TensorFlow sees none on {platform.node()}; set device = "
            "auto or cpu in luigi.cfg, or run on a host with an NVIDIA GPU and a CUDA build of TensorFlow "
            "(tensorflow-cpu never sees one)"
        )
    return gpus[0] if wants_gpu(setting, len(gpus)) else CPU


def gpu_device_nodes(dev: Path = Path("/dev"), environ: Mapping[str, str] = os.environ) -> int:
    """How many NVIDIA GPUs this host shows a process, cheaply: `/dev/nvidia<N>` nodes (not nvidiactl,
    nvidia-uvm), capped by the leading valid entries of `CUDA_VISIBLE_DEVICES` when it is set (CUDA stops at
    the first empty or negative entry, so "" and "-1" hide every GPU)."""
    try:
        nodes = sum(1 for path in dev.iterdir() if path.name.startswith("nvidia") and path.name[6:].isdigit())
    except OSError:
        return 0
    visible = environ.get("CUDA_VISIBLE_DEVICES")
    if visible is None:
        return nodes
    listed = 0
    for entry in visible.split(","):
        if not entry.strip() or entry.strip().startswith("-"):
            break
        listed += 1
    return min(nodes, listed)
