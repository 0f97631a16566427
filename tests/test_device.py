"""`[pipeline] device` (auto | cpu | gpu): checked, honoured by training and evaluation, recorded, and sized
for luigid, without a GPU. No GPU was available: the GPU side is tested only through TensorFlow's list of
GPUs, faked, and the session config it would get; no session has run on one."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import luigi
import luigi.configuration
import pytest
import yaml

from pipeline import EvaluateRun, TrainRun
from pipeline.site import device_setting
from pipeline.training import GPU_RESOURCE, TRAINING_RESOURCE, run_resources
from tasks.core.config import parse_config
from tasks.core.devices import gpu_device_nodes, resolve_device
from tasks.core.errors import ConfigError
from tasks.core.runs import expand_runs
from tasks.training import devices
from tests.conftest import REPO_ROOT, build, luigi_cli
from tests.test_train import make_settings, train, write_data

SMOKE = yaml.safe_load((REPO_ROOT / "configs" / "smoke.yaml").read_text())
FAKE_GPU = "/physical_device:GPU:0"


def _spec():
    raw = dict(SMOKE, training={"epochs": 1, "batch_size": 64})
    return next(spec for spec in expand_runs(parse_config(raw)) if spec.name == "sgd")


@pytest.fixture
def device_set():
    """Sets `[pipeline] device` in luigi's config for the test, and restores it afterwards."""
    config = luigi.configuration.get_config()
    saved = config.get("pipeline", "device", None)
    yield lambda value: config.set("pipeline", "device", value)
    if saved is None:
        config.remove_option("pipeline", "device")
    else:
        config.set("pipeline", "device", saved)


@pytest.fixture
def tf_sees(monkeypatch):
    """Sets the GPUs TensorFlow lists, as tasks.training.devices reads them (the real list on this host is empty)."""
    return lambda *names: monkeypatch.setattr(devices, "GPUS", tuple(names))


def test_only_auto_cpu_and_gpu_are_accepted(device_set):
    for value in ("auto", "cpu", "gpu"):
        device_set(value)
        assert device_setting() == value
    for value in ("GPU", "cuda", "", "gpu:1"):
        device_set(value)
        with pytest.raises(ConfigError) as refused:
            device_setting()
        assert f"[pipeline] device: expected one of auto, cpu, gpu, found {value!r}" in str(refused.value)
        assert "fix it in luigi.cfg" in str(refused.value)
        # Both run tasks refuse it when luigi asks whether they are complete, i.e. while scheduling.
        with pytest.raises(ConfigError, match=r"\[pipeline\] device"):
            TrainRun.of(_spec()).complete()
        with pytest.raises(ConfigError, match=r"\[pipeline\] device"):
            EvaluateRun.of(_spec()).complete()


def test_a_bad_device_stops_the_command_at_scheduling_and_writes_nothing(tmp_path, synthetic_raw):
    raw, checksums = synthetic_raw
    site = tmp_path / "site.cfg"
    site.write_text(
        f"[pipeline]\nartifacts_root = {tmp_path / 'artifacts'}\nsources = {json.dumps([str(raw)])}\n"
        f"checksums_file = {checksums}\ndevice = tpu\n"
    )
    spec = _spec()
    args = ["--name", spec.name, "--run-hash", spec.run_hash, "--seed", "0", "--learning-rate", str(spec.learning_rate)]
    done = luigi_cli(["EvaluateRun", *args, "--settings", spec.settings.canonical_json()], site, 120)
    assert done.returncode == 35, done.stderr[-2000:]  # [retcode] scheduling_error
    assert "ConfigError: [pipeline] device: expected one of auto, cpu, gpu, found 'tpu'" in done.stderr
    assert not (tmp_path / "artifacts").exists()  # not even the data stage ran


def test_the_device_resolves_against_the_gpus_tensorflow_lists():
    assert resolve_device("auto", ()) == "cpu"
    assert resolve_device("cpu", ()) == "cpu"
    assert resolve_device("auto", (FAKE_GPU, "/physical_device:GPU:1")) == FAKE_GPU  # TF places ops on the first
    assert resolve_device("gpu", (FAKE_GPU,)) == FAKE_GPU
    assert resolve_device("cpu", (FAKE_GPU,)) == "cpu"
    with pytest.raises(ConfigError, match="gpu needs a GPU, but TensorFlow sees none on "):
        resolve_device("gpu", ())
    with pytest.raises(ConfigError, match="expected one of auto, cpu, gpu"):
        resolve_device("Auto", (FAKE_GPU,))


def test_gpu_without_one_is_refused_before_training_writes_anything(tmp_path, tf_sees):
    tf_sees()  # what TensorFlow lists on a host without a GPU (this one)
    data = write_data(tmp_path)
    run_dir = tmp_path / "runs" / "one" / "seed-0"
    with pytest.raises(ConfigError, match="gpu needs a GPU, but TensorFlow sees none") as refused:
        train(data, run_dir, device="gpu")
    assert "set device = auto or cpu in luigi.cfg" in str(refused.value)
    assert not (tmp_path / "runs").exists()


def test_gpu_without_one_fails_the_task_before_its_lock_or_run_folder(site, device_set, tf_sees, failures):
    tf_sees()
    device_set("gpu")
    task = TrainRun.of(_spec())
    result = luigi.build([task], local_scheduler=True, detailed_summary=True, log_level="CRITICAL")
    assert result.status.name == "FAILED", result.summary_text
    errors = [exc for _, exc in failures]
    assert [type(exc) for exc in errors] == [ConfigError] and "gpu needs a GPU" in str(errors[0])
    assert (site / "data" / "manifest.json").exists()  # the data stage ran; the run wrote nothing at all
    assert not (site / "runs").exists(), sorted(str(path) for path in (site / "runs").rglob("*"))


def test_cpu_and_auto_train_on_the_cpu_to_the_same_weights_and_record_it(tmp_path, tf_sees):
    tf_sees()
    data = write_data(tmp_path)
    records = {
        setting: train(data, tmp_path / setting, make_settings(epochs=1), device=setting) for setting in ("cpu", "auto")
    }
    assert {setting: record["hardware"]["device"] for setting, record in records.items()} == {
        "cpu": "cpu",
        "auto": "cpu",
    }
    assert records["cpu"]["weights_sha256"] == records["auto"]["weights_sha256"]
    assert json.loads((tmp_path / "cpu" / "run.json").read_text())["hardware"]["device"] == "cpu"


def test_cpu_is_honoured_by_both_tasks_on_a_host_with_a_gpu(site, device_set, tf_sees):
    tf_sees(FAKE_GPU)  # auto would pick it: the pipeline must pass `cpu` to training and to evaluation
    device_set("cpu")
    spec = _spec()
    build([EvaluateRun.of(spec)])
    run_dir = TrainRun.of(spec).run_dir
    assert json.loads((run_dir / "run.json").read_text())["hardware"]["device"] == "cpu"
    evaluation = json.loads((run_dir / "evaluation.json").read_text())
    assert evaluation["device"] == "cpu" and evaluation["test"]["examples"] > 0


def test_session_configs_hide_gpus_for_cpu_and_share_them_for_gpu():
    cpu = devices.device_config("cpu", 1, 2)
    assert dict(cpu.device_count) == {"GPU": 0}
    assert (cpu.intra_op_parallelism_threads, cpu.inter_op_parallelism_threads) == (1, 2)
    gpu = devices.device_config(FAKE_GPU, 1, 2)
    assert "GPU" not in gpu.device_count and gpu.gpu_options.allow_growth and gpu.allow_soft_placement
    assert (gpu.intra_op_parallelism_threads, gpu.inter_op_parallelism_threads) == (1, 2)


def test_a_gpu_process_never_uses_the_cpu_only_fused_kernel(monkeypatch, tf_sees):
    from tasks.training import kernels

    monkeypatch.setattr(kernels, "_forbidden", None)  # restored afterwards: the switch is per process
    monkeypatch.setattr(devices, "enable_op_determinism", lambda: None)  # process-wide: not in the test's process
    monkeypatch.delenv(kernels.PURE_TF_ENV, raising=False)
    tf_sees()
    devices.session_config("auto", 1, 1)  # no GPU: the kernel stays in use
    assert not kernels.pure_tf_forced()
    tf_sees(FAKE_GPU)
    devices.session_config("auto", 1, 1)
    assert kernels.pure_tf_forced()
    # And an M-SVAG step built afterwards in this process holds none of the CPU-only op.
    from tasks.core.runs import OptimizerSettings
    from tasks.training.optimizers import make_optimizer
    from tasks.training.tf1 import tf

    with tf.Graph().as_default() as graph:
        make_optimizer(OptimizerSettings(name="msvag", learning_rate=0.1, params={"beta": 0.9})).minimize(
            tf.reduce_sum(tf.square(tf.Variable(tf.ones([3]))))
        )
    op_types = {op.type for op in graph.get_operations()}
    assert "VarianceAdaptedStep" not in op_types and "ApplyGradientDescent" in op_types


def test_a_run_asks_luigid_for_a_gpu_slot_only_when_it_will_want_a_gpu(device_set):
    training_only, with_gpu = {TRAINING_RESOURCE: 1}, {TRAINING_RESOURCE: 1, GPU_RESOURCE: 1}
    assert run_resources("gpu", 0) == with_gpu  # refused later, when the run starts, if TF sees none
    assert run_resources("auto", 2) == with_gpu
    assert run_resources("auto", 0) == training_only
    assert run_resources("cpu", 4) == training_only
    assert run_resources("tpu", 4) == training_only  # complete() refuses it; resources must not raise
    task = TrainRun.of(_spec())
    device_set("gpu")
    assert task.resources == with_gpu
    device_set("cpu")
    assert task.resources == training_only


def test_gpus_are_counted_from_device_nodes_and_cuda_visible_devices(tmp_path):
    for name in ("nvidia0", "nvidia1", "nvidiactl", "nvidia-uvm", "nvidia-modeset", "null"):
        (tmp_path / name).touch()
    assert gpu_device_nodes(tmp_path, {}) == 2
    visible = {"": 0, "-1": 0, "1": 1, "0,1,2": 2, "0,-1,1": 1, "0, 1": 2}
    assert {value: gpu_device_nodes(tmp_path, {"CUDA_VISIBLE_DEVICES": value}) for value in visible} == visible
    assert gpu_device_nodes(tmp_path / "missing", {}) == 0


def test_scheduling_with_any_device_never_imports_tensorflow(tmp_path):
    spec = _spec()
    code = (
        "import sys, luigi.configuration; from pipeline import TrainRun, EvaluateRun; from tasks.core.runs import "
        "RunSettings; settings = RunSettings.parse(sys.argv[1]); seen = []\n"
        "for device in ('auto', 'cpu', 'gpu'):\n"
        "    luigi.configuration.get_config().set('pipeline', 'device', device)\n"
        f"    task = TrainRun(name='sgd', run_hash='{spec.run_hash}', seed=0, learning_rate={spec.learning_rate}, "
        "settings=settings)\n"
        "    seen.append((task.resources, task.complete(), EvaluateRun.of(task.spec).complete(), task.deps()))\n"
        "print('tensorflow' in sys.modules, seen[2][0])"
    )
    site = tmp_path / "site.cfg"
    # An incomplete run makes the worker preload TensorFlow for its forks (pipeline/warm.py, tested in
    # test_warm.py); off here, so that what is checked is the device logic alone.
    site.write_text(f"[pipeline]\nartifacts_root = {tmp_path / 'artifacts'}\npreload_tensorflow = false\n")
    done = subprocess.run(
        [sys.executable, "-c", code, spec.settings.canonical_json()],
        cwd=REPO_ROOT,
        env={**os.environ, "LUIGI_CONFIG_PATH": str(site)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "False {'training': 1, 'gpu': 1}"


GPU_BRANCH_ON_CPU = """
import json, sys, tempfile
from pathlib import Path
from tensorflow.python.framework.config import is_op_determinism_enabled
from tasks.core.runs import settings_hash
from tasks.evaluation.evaluate import score_run
from tasks.training import devices
from tests.test_train import make_settings, train, write_data

folder = Path(tempfile.mkdtemp(dir=sys.argv[1]))
data = write_data(folder)
settings = make_settings(epochs=1)
devices.GPUS = ()
cpu = train(data, folder / "cpu", settings, device="auto")
seen = {"determinism_after_cpu": is_op_determinism_enabled()}
devices.GPUS = ("/physical_device:GPU:0",)  # as if TF listed a GPU: the gpu branch runs, its ops on the CPU
gpu = [train(data, folder / f"gpu-{n}", settings, device="gpu") for n in (1, 2)]
scored = score_run(folder / "gpu-1", data[0], settings=settings, run_hash=settings_hash(settings), seed=0, device="gpu")
seen |= {
    "determinism_after_gpu": is_op_determinism_enabled(),
    "recorded": [record["hardware"]["device"] for record in (cpu, *gpu)] + [scored["device"]],
    "repeats": gpu[0]["weights_sha256"] == gpu[1]["weights_sha256"],
}
print(json.dumps(seen))
"""


def test_the_gpu_branch_trains_repeatably_scores_and_switches_op_determinism_on_for_gpu_only(tmp_path):
    # In its own process: op determinism, once on, stays on for the process (and changes CPU weights).
    done = subprocess.run(
        [sys.executable, "-c", GPU_BRANCH_ON_CPU, str(tmp_path)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == {
        "determinism_after_cpu": False,
        "determinism_after_gpu": True,
        "recorded": ["cpu", FAKE_GPU, FAKE_GPU, FAKE_GPU],
        "repeats": True,
    }
