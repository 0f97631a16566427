"""Learning-rate schedules: validated by name, part of run identity, computed in the graph step by step.

The known truth is the definition in tasks.core.schedule.ScheduleConfig, written out again here in numpy.
A recording optimizer (SGD that also writes each step's rate into a variable saved with the checkpoint)
shows the rate the graph used at every global step, across chunks, epochs and a resume.
"""

from __future__ import annotations

import json
import math
import signal

import numpy as np
import pytest

from tasks.core.config import parse_config
from tasks.core.errors import ConfigError
from tasks.core.runs import RunSettings, run_settings
from tasks.core.schedule import ScheduleConfig
from tasks.training import graph as train_graph
from tasks.training.tf1 import tf
from tests.test_train import BATCH, make_settings, train

STEPS_PER_EPOCH, EPOCHS = 20, 3  # tests.test_train's data: 400 training rows, batch 20
TOTAL = STEPS_PER_EPOCH * EPOCHS


def config_with(schedule, learning_rate: float = 0.1, training=None):
    return parse_config(
        {
            "experiment": "schedules",
            "model": {"name": "mlp", "params": {"hidden": [8]}},
            "training": training or {"epochs": EPOCHS, "batch_size": BATCH},
            "seeds": [0],
            "optimizers": [
                {"name": "sgd", "learning_rate": learning_rate, **({"schedule": schedule} if schedule else {})}
            ],
        }
    )


def settings_with(schedule, optimizer: str = "sgd", learning_rate: float = 0.1) -> dict:
    settings = make_settings(optimizer, learning_rate, epochs=EPOCHS)
    if schedule is not None:
        settings["optimizer"]["schedule"] = ScheduleConfig.model_validate(schedule).identity()
    return RunSettings.parse(settings).as_dict()


def expected_rates(schedule: dict, base: float, total: int) -> np.ndarray:
    """The definition, by hand: base × warm-up × (step drops | half cosine) at steps 0 … total − 1."""
    t = np.arange(total, dtype=np.float64)
    warmup = schedule.get("warmup_steps", 0)
    factor = np.minimum(1.0, (t + 1) / warmup) if warmup else np.ones(total)
    if schedule.get("kind") == "step":
        drops = np.array([sum(step >= b for b in schedule["boundaries"]) for step in t])
        factor = factor * schedule.get("factor", 0.1) ** drops
    if schedule.get("kind") == "cosine":
        final = schedule.get("final_fraction", 0.0)
        progress = np.clip((t - warmup) / (total - warmup), 0, 1)
        factor = factor * (final + (1 - final) * 0.5 * (1 + np.cos(math.pi * progress)))
    return (base * factor).astype(np.float32)


# ---- the schema -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("schedule", "message"),
    [
        (
            {"kind": "linear"},
            "optimizers.0.schedule.kind: Input should be 'constant', 'step' or 'cosine', found 'linear'",
        ),
        ({"kind": "step"}, "optimizers.0.schedule.boundaries: a step schedule needs the steps where the rate drops"),
        ({"kind": "step", "boundaries": [9, 9]}, "schedule.boundaries: expected strictly increasing step numbers"),
        ({"kind": "step", "boundaries": [0]}, "schedule.boundaries: expected whole step numbers from 1 to"),
        ({"kind": "step", "boundaries": [5], "factor": 0}, "optimizers.0.schedule.factor: expected a number in (0, 1]"),
        ({"kind": "step", "boundaries": [5], "factor": 2.0}, "schedule.factor: expected a number in (0, 1], found 2.0"),
        ({"kind": "cosine", "final_fraction": float("nan")}, "schedule.final_fraction: expected a number in [0, 1]"),
        (
            {"kind": "cosine", "boundaries": [3]},
            "schedule.boundaries: only a step schedule takes it, found kind 'cosine'",
        ),
        ({"kind": "constant", "factor": 0.5}, "schedule.factor: only a step schedule takes it, found kind 'constant'"),
        ({"kind": "step", "boundaries": [3], "final_fraction": 0.1}, "schedule.final_fraction: only a cosine schedule"),
        ({"warmup": 3}, "optimizers.0.schedule.warmup: unknown key (did you mean 'warmup_steps'?)"),
        ({"warmup_steps": -1}, "optimizers.0.schedule.warmup_steps: Input should be greater than or equal to 0"),
        ({"warmup_steps": 2.5}, "optimizers.0.schedule.warmup_steps: Input should be a valid integer, found 2.5"),
    ],
)
def test_a_bad_schedule_is_refused_naming_its_key(schedule, message):
    with pytest.raises(ConfigError) as refused:
        config_with(schedule)
    assert message in str(refused.value)


def test_defaults_are_resolved_into_the_identity():
    step = config_with({"kind": "step", "boundaries": [10, 30]}).optimizers[0].schedule
    assert step.identity() == {"kind": "step", "warmup_steps": 0, "boundaries": [10, 30], "factor": 0.1}
    cosine = config_with({"kind": "cosine", "warmup_steps": 5}).optimizers[0].schedule
    assert cosine.identity() == {"kind": "cosine", "warmup_steps": 5, "final_fraction": 0.0}
    assert cosine.describe() == "cosine to 0×, after 5 warm-up steps"
    assert step.describe() == "×0.1 at steps 10, 30"


# ---- identity ---------------------------------------------------------------------------------------------


def _hash(schedule) -> str:
    config = config_with(schedule)
    return run_settings(config, config.optimizers[0], 0.1).run_hash


def test_a_constant_schedule_keeps_the_run_hash_of_no_schedule_and_any_other_is_its_own_run():
    plain = _hash(None)
    assert _hash({"kind": "constant"}) == _hash({"kind": "constant", "warmup_steps": 0}) == plain
    others = [
        {"warmup_steps": 5},
        {"kind": "step", "boundaries": [10]},
        {"kind": "step", "boundaries": [11]},
        {"kind": "step", "boundaries": [10], "factor": 0.5},
        {"kind": "cosine"},
        {"kind": "cosine", "final_fraction": 0.1},
    ]
    hashes = [_hash(schedule) for schedule in others]
    assert plain not in hashes and len(set(hashes)) == len(hashes)
    config = config_with({"kind": "cosine"})
    recorded = run_settings(config, config.optimizers[0], 0.1).as_dict()["optimizer"]
    assert recorded["schedule"] == {"kind": "cosine", "warmup_steps": 0, "final_fraction": 0.0}
    assert (
        "schedule" not in run_settings(config_with(None), config_with(None).optimizers[0], 0.1).as_dict()["optimizer"]
    )


# ---- in the graph -----------------------------------------------------------------------------------------


class RecordingSGD(tf.train.GradientDescentOptimizer):
    """SGD that also writes the rate of each step to `rate_log[global step]` (a variable in the checkpoint)."""

    def __init__(self, learning_rate, rate, total: int):
        super().__init__(learning_rate)
        self._rate = rate
        self.rate_log = tf.Variable(tf.zeros([total], tf.float32), name="rate_log", trainable=False)

    def _finish(self, update_ops, name_scope):
        step = self._rate.at_step if self._rate is not None else tf.zeros([], tf.int64)
        record = tf.scatter_update(self.rate_log, step, self._learning_rate_tensor)
        return super()._finish([*update_ops, record], name_scope)


@pytest.fixture
def recording(monkeypatch):
    """Train with RecordingSGD (in chunks of 7 steps, so chunks straddle epochs' ends) and read its log."""

    def make(settings, rate=None):
        return RecordingSGD(settings.learning_rate if rate is None else rate, rate, TOTAL)

    monkeypatch.setattr(train_graph, "make_optimizer", make)
    monkeypatch.setattr(train_graph, "CHUNK_STEPS", 7)

    def rates_of(run_dir) -> np.ndarray:
        record = json.loads((run_dir / "run.json").read_text())
        return tf.train.load_variable(str(run_dir / record["final_checkpoint"]), "rate_log")

    return rates_of


SCHEDULES = {
    "step": {"kind": "step", "warmup_steps": 5, "boundaries": [7, 25, 41], "factor": 0.5},
    "cosine": {"kind": "cosine", "warmup_steps": 6, "final_fraction": 0.1},
    "warm-up only": {"kind": "constant", "warmup_steps": 13},
}


@pytest.mark.parametrize("name", SCHEDULES)
def test_every_step_uses_its_scheduled_rate_across_chunks_and_epochs(data, tmp_path, recording, name):
    schedule = SCHEDULES[name]
    record = train(data, tmp_path / "run", settings_with(schedule))
    assert record["status"] == "completed" and record["epochs_completed"] == EPOCHS
    logged = recording(tmp_path / "run")
    np.testing.assert_allclose(logged, expected_rates(schedule, 0.1, TOTAL), rtol=1e-6, atol=0)
    assert len(set(logged.tolist())) > 3  # the rate really moves within the run


def test_a_resume_restores_the_schedules_position(data, tmp_path, recording):
    from tests.test_train import train_until_stopped

    settings = settings_with(SCHEDULES["cosine"])
    whole = train(data, tmp_path / "whole", settings)
    train_until_stopped(data, tmp_path / "resumed", settings, epochs=1)
    resumed = train(data, tmp_path / "resumed", settings)
    assert resumed["attempts"] == 2 and resumed["weights_sha256"] == whole["weights_sha256"]
    assert recording(tmp_path / "resumed").tobytes() == recording(tmp_path / "whole").tobytes()


def test_a_schedule_changes_the_weights_and_a_constant_one_does_not(data, tmp_path):
    plain = train(data, tmp_path / "plain", settings_with(None, "momentum", 0.03))
    constant = train(data, tmp_path / "constant", settings_with({"kind": "constant"}, "momentum", 0.03))
    cosine = train(data, tmp_path / "cosine", settings_with(SCHEDULES["cosine"], "momentum", 0.03))
    assert constant["weights_sha256"] == plain["weights_sha256"]
    assert cosine["weights_sha256"] != plain["weights_sha256"]
    assert cosine["settings"]["optimizer"]["schedule"]["kind"] == "cosine"


@pytest.mark.parametrize("optimizer", ["adam", "msvag", "mssd", "rmsprop"])
def test_every_optimizer_family_takes_a_schedule(data, tmp_path, optimizer):
    rate = {"adam": 0.001, "msvag": 0.1, "mssd": 0.001, "rmsprop": 0.001}[optimizer]
    record = train(data, tmp_path / optimizer, settings_with(SCHEDULES["step"], optimizer, rate))
    constant = train(data, tmp_path / f"{optimizer}-constant", settings_with(None, optimizer, rate))
    assert record["status"] == "completed" and record["epochs_completed"] == EPOCHS
    assert record["weights_sha256"] != constant["weights_sha256"]  # the schedule reached this optimizer


def test_a_schedule_step_beyond_the_budget_is_refused_before_the_run_folder(data, tmp_path):
    settings = settings_with({"kind": "step", "boundaries": [10, TOTAL]})
    with pytest.raises(ConfigError) as refused:
        train(data, tmp_path / "run", settings)
    assert f"schedule.boundaries: expected steps below the run's {TOTAL} steps, found [{TOTAL}]" in str(refused.value)
    assert "400 training rows // batch 20 = 20 steps per epoch" in str(refused.value)
    assert not (tmp_path / "run").exists()
    warm = settings_with({"kind": "cosine", "warmup_steps": TOTAL})
    with pytest.raises(ConfigError, match=f"schedule.warmup_steps: expected fewer than the run's {TOTAL} steps"):
        train(data, tmp_path / "run", warm)


def test_an_optimizer_that_reads_the_rate_outside_the_step_is_refused(data, tmp_path, monkeypatch):
    def eager(settings, rate=None):
        return tf.train.GradientDescentOptimizer(rate())  # turns the callable into a tensor at once

    monkeypatch.setattr(train_graph, "make_optimizer", eager)
    with pytest.raises(Exception, match="read outside the training step; the optimizer must resolve a callable"):
        train(data, tmp_path / "run", settings_with(SCHEDULES["cosine"]))


# ---- SIGKILL mid-budget -----------------------------------------------------------------------------------


@pytest.mark.parametrize("crash_at", ["train.mid-epoch:3", "train.checkpoint-saved:2"])
def test_a_scheduled_step_budget_resumes_bit_identically_after_a_sigkill(data, tmp_path, crash_at):
    from tests import test_step_budget as budget

    settings = budget._step_settings()
    settings["optimizer"]["schedule"] = {"kind": "cosine", "warmup_steps": 4, "final_fraction": 0.0}
    reference = budget._child(data, tmp_path / "reference", settings=settings)
    assert reference.returncode == 0, reference.stderr[-3000:]
    killed = budget._child(data, tmp_path / "run", crash_at, settings=settings)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    resumed = budget._child(data, tmp_path / "run", settings=settings)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    whole = json.loads((tmp_path / "reference" / "run.json").read_text())
    record = json.loads((tmp_path / "run" / "run.json").read_text())
    assert record["attempts"] == 2 and record["weights_sha256"] == whole["weights_sha256"]
    assert record["settings"]["optimizer"]["schedule"]["kind"] == "cosine"


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    from tests.test_train import write_data

    return write_data(tmp_path_factory.mktemp("arrays"))


def test_configs_without_schedules_keep_their_run_and_config_hashes():
    """Pinned before schedules existed: a config's run hashes and its config hash (which reports record)."""
    from tasks.core.experiment import config_hash, load_experiment
    from tasks.core.runs import grid_specs
    from tests.conftest import REPO_ROOT

    pinned = {"default": "483d7a181e", "smoke": "e3db81ce81", "dissecting-adam": "7586a48694"}
    for name, expected in pinned.items():
        config = load_experiment(str(REPO_ROOT / "configs" / f"{name}.yaml"))[0]
        assert config_hash(config) == expected, name
    config = load_experiment(str(REPO_ROOT / "configs" / "default.yaml"))[0]
    assert grid_specs(config, config.optimizers[0])[0].run_hash == "cbc3518422"
    scheduled = config.model_copy(
        update={"optimizers": [config.optimizers[0].model_copy(update={"schedule": ScheduleConfig(kind="cosine")})]}
    )
    assert config_hash(scheduled) != config_hash(config.model_copy(update={"optimizers": config.optimizers[:1]}))


def test_a_scheduled_graph_without_its_step_budget_is_refused():
    from tasks.core.errors import TrainingError

    settings = RunSettings.parse(settings_with(SCHEDULES["cosine"]))
    with pytest.raises(TrainingError, match="a scheduled run needs total_steps"):
        train_graph.build_training_graph(settings.model, settings.optimizer, 0, 40, 2, BATCH)
