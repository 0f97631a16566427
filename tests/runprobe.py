"""Watch a real `train_run` from outside: the row orders its session was fed, epoch by epoch, and the model's
weights right after the graph's `init`. The tests that check paired seeds and recompute training metrics
use it, so both observe the loop itself rather than a re-creation of it."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from tasks.core import faults
from tasks.core.config import parse_config
from tasks.core.runs import run_settings
from tasks.data.arrays import write_arrays, write_indices
from tasks.training import loop
from tasks.training.tf1 import tf

ORDER_FEED = "data/order_init:0"  # the epoch's [steps, batch] rows, fed once per epoch
IMAGES_FEED = "data/images_init:0"  # fed with the init op, once per session


@dataclass
class Probe:
    orders: list[np.ndarray] = field(default_factory=list)
    initial_weights: dict[str, np.ndarray] = field(default_factory=dict)
    record: dict | None = None  # run.json, when the run finished


def _probing_session(base: type, probe: Probe) -> type:
    class ProbingSession(base):
        def run(self, fetches, feed_dict=None, **kwargs):
            fed = {getattr(key, "name", ""): value for key, value in (feed_dict or {}).items()}
            if ORDER_FEED in fed:
                probe.orders.append(np.array(fed[ORDER_FEED], copy=True))
            result = super().run(fetches, feed_dict, **kwargs)
            if IMAGES_FEED in fed and not probe.initial_weights:
                variables = self.graph.get_collection(tf.GraphKeys.TRAINABLE_VARIABLES)
                values = super().run(variables)
                probe.initial_weights = {variable.op.name: value for variable, value in zip(variables, values)}
            return result

    return ProbingSession


def probe_train_run(
    monkeypatch, settings: dict, seed: int, split: tuple[Path, Path], run_dir: Path, stop_at: tuple | None = None
) -> Probe:
    """Run `loop.train_run` and watch it; with `stop_at` = (failpoint, hit), stop it there instead."""
    probe = Probe()
    with monkeypatch.context() as patch:
        patch.setattr(tf, "Session", _probing_session(tf.Session, probe))
        if stop_at is None:
            probe.record = loop.train_run(settings, seed, *split, run_dir)
        else:
            with faults.stop_at(*stop_at), pytest.raises(faults.FailpointStop):
                loop.train_run(settings, seed, *split, run_dir)
    return probe


def write_split(folder: Path, images: np.ndarray, labels: np.ndarray, validation: np.ndarray) -> tuple[Path, Path]:
    """(train.arrow, split.arrow) of `images`/`labels` with the given validation rows."""
    folder.mkdir(parents=True, exist_ok=True)
    write_arrays(folder / "train.arrow", images, labels)
    write_indices(folder / "split.arrow", np.sort(validation))
    return folder / "train.arrow", folder / "split.arrow"


def settings_for(
    optimizer: str, learning_rate: float, *, model: dict, epochs: int, batch_size: int, validation_per_class: int = 1
) -> dict:
    """One run's settings through the real config schema (defaults resolved)."""
    config = parse_config(
        {
            "experiment": "probe",
            "model": model,
            "training": {"epochs": epochs, "batch_size": batch_size},
            "split": {"validation_per_class": validation_per_class, "seed": 0},
            "seeds": [0],
            "optimizers": [{"name": optimizer, "learning_rate": learning_rate}],
        }
    )
    return run_settings(config, config.optimizers[0], learning_rate).as_dict()
