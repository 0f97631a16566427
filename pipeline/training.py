"""Training and evaluation of one run: TrainRun → EvaluateRun, and their nightly twins.

A run reads like `TrainRun(learning_rate=0.001, name=adam, run_hash=351b8dc998, seed=1)` in luigid and on
the console. The full settings travel as a hidden, insignificant parameter and are checked against
`run_hash` before the task can schedule anything.
"""

from __future__ import annotations

import functools

import luigi
from luigi.parameter import ParameterVisibility

from pipeline.data import LockedTarget, PrepareData, VerifyData
from pipeline.params import RunSettingsParameter
from pipeline.site import device_setting, layout, site_settings
from pipeline.warm import warm_up_tensorflow
from tasks.core.config import check_safe_name
from tasks.core.devices import gpu_device_nodes, wants_gpu
from tasks.core.errors import ConfigError, RunFolderError
from tasks.core.runfolder import EVALUATION_JSON, RUN_JSON, RunFolder
from tasks.core.runs import RunOnDisk, RunSpec

TRAINING_RESOURCE = "training"  # [resources] training = N caps the runs that train at once
GPU_RESOURCE = "gpu"  # [resources] gpu = N caps the runs that train on a GPU at once: N = the GPUs


def run_resources(device: str, gpus_seen: int) -> dict[str, int]:
    """A TrainRun's luigid resources for `[pipeline] device` on a host showing `gpus_seen` GPUs: a training
    slot, and a GPU slot when the run will want a GPU (tasks.core.devices.wants_gpu)."""
    if wants_gpu(device, gpus_seen):
        return {TRAINING_RESOURCE: 1, GPU_RESOURCE: 1}
    return {TRAINING_RESOURCE: 1}


@functools.cache
def _gpus_here() -> int:
    return gpu_device_nodes()  # device nodes, not TensorFlow: resources are read while scheduling


class RunIdentity(luigi.Task):
    """The parameters that name one run; `spec` checks them against the settings."""

    name = luigi.Parameter(description="the optimizer entry's name in the config")
    run_hash = luigi.Parameter(description="hash of the run's settings: the run folder's name ends with it")
    seed = luigi.IntParameter(description="the run's seed (initial weights and data order)")
    learning_rate = luigi.FloatParameter(description="the optimizer's learning rate (part of run_hash)")
    settings = RunSettingsParameter(
        significant=False, visibility=ParameterVisibility.HIDDEN, description="the run's full settings (JSON)"
    )
    night = ""  # a nightly run's date, ISO; empty for a plain run

    @classmethod
    def of(cls, spec: RunSpec, **extra):
        return cls(
            name=spec.name,
            run_hash=spec.run_hash,
            seed=spec.seed,
            learning_rate=spec.learning_rate,
            settings=spec.settings,
            **extra,
        )

    @functools.cached_property
    def spec(self) -> RunSpec:
        """The run, once its parameters agree with each other; a ConfigError stops scheduling otherwise."""
        try:
            check_safe_name(self.name, f"{self.task_family} --name")
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        found = self.settings.run_hash
        if found != self.run_hash:
            raise ConfigError(
                f"{self.task_family}: --run-hash {self.run_hash} does not match the settings' hash {found}"
            )
        if self.settings.optimizer.learning_rate != self.learning_rate:
            raise ConfigError(
                f"{self.task_family}: --learning-rate {self.learning_rate} differs from the settings' "
                f"{self.settings.optimizer.learning_rate}"
            )
        try:
            return RunSpec(name=self.name, settings=self.settings, seed=self.seed)
        except ValueError as exc:
            raise ConfigError(f"{self.task_family}: --seed {exc}") from None

    @property
    def run_dir(self):
        return layout().run_dir(self.spec, self.night)

    @property
    def folder(self) -> RunFolder:
        return RunFolder(self.run_dir, self.run_hash, self.seed)


class OnDevice(LockedTarget):
    """A LockedTarget whose work runs a TensorFlow session on the `[pipeline] device`.

    run() fails the task when the setting is `gpu` and this host's TensorFlow sees no GPU, before the lock
    file or the run folder is made. (A bad value never gets this far: the tasks' complete() refuses it while
    scheduling.) A mixin, like LockedTarget: a subclass says in `done()` whether its target stands.
    """

    def done(self) -> bool:
        raise NotImplementedError

    def complete(self):
        device_setting()  # a bad `[pipeline] device` stops scheduling here, before anything is written
        done = self.done()
        if not done:
            warm_up_tensorflow()  # it will run: let its fork inherit TensorFlow (pipeline/warm.py)
        return done

    def run(self):
        from tasks.training.devices import usable_device  # TensorFlow loads here, never at scheduling time

        usable_device(device_setting())
        super().run()


class Nightly:
    """Makes a run a nightly one: dated folders under runs/nightly/<date>/, and data re-verified first."""

    date = luigi.DateParameter(description="the night")

    @property
    def night(self) -> str:
        return self.date.isoformat()


class TrainRun(OnDevice, RunIdentity):
    """Train one (model, optimizer, hyper-parameters, seed) run; run.json, written last, marks it done.

    It trains under its run folder's lock, so two commands (or hosts) that both want this run never
    both train it: the second waits, finds it complete, and returns.
    """

    lock_timeout = 7 * 24 * 3600.0  # another process may be training this very run for a long time

    @property
    def resources(self):
        # luigid keeps one resource setting per task, not per worker: a per-host name cannot work, so a
        # host's own cap is its --workers (docs/operations.md, "Several workers, several machines"). A bad device value
        # asks for no GPU here; complete() refuses it.
        return run_resources(site_settings().device, _gpus_here())

    def requires(self):
        split = self.spec.settings.split
        return PrepareData(validation_per_class=split.validation_per_class, split_seed=self.spec.split_seed)

    def output(self):
        return luigi.LocalTarget(str(self.run_dir / RUN_JSON))

    def done(self) -> bool:
        # run.json alone is not enough: a finished run that lost its metrics or checkpoint trains again.
        return self.folder.finished

    def build(self):
        from tasks.training.loop import train_run  # TensorFlow loads here, never at scheduling time

        site = site_settings()
        self.set_tracking_url(self.run_dir.resolve().as_uri())
        train_run(
            self.spec.settings,
            self.seed,
            layout().train_arrow,
            self.input().path,
            self.run_dir,
            intra_op_threads=site.intra_op_threads,
            inter_op_threads=site.inter_op_threads,
            device=site.device,
            progress=self._report_progress,
            until_epoch=self.stop_after,
        )

    @property
    def stop_after(self) -> int | None:
        """The epoch to stop after without finishing (TrainToEpoch); None: train all epochs."""
        return None

    def _report_progress(self, fraction: float, message: str) -> None:
        self.set_progress_percentage(round(100 * fraction, 1))
        self.set_status_message(message)


class TrainToEpoch(TrainRun):
    """Train one run up to `until_epoch` only (a successive-halving rung): done when the run has that epoch's
    checkpoint and metrics, or is finished. A later TrainRun of the same run resumes there, bit for bit."""

    until_epoch = luigi.IntParameter(description="the epoch to stop after (a tuning rung)")

    def done(self) -> bool:
        folder = self.folder
        if folder.finished:
            return True
        try:
            latest, rows = folder.latest(), folder.metric_rows()
        except (RunFolderError, ValueError):
            return False
        return latest is not None and latest["epoch"] >= self.until_epoch and len(rows) >= self.until_epoch

    @property
    def stop_after(self) -> int | None:
        return self.until_epoch


class NightlyTrainRun(Nightly, TrainRun):
    """A nightly retraining run: its own dated folder, after the night's data verification."""

    def requires(self):
        return {"split": super().requires(), "verified": VerifyData(date=self.date)}

    def input(self):
        return super().input()["split"]


class EvaluateRun(OnDevice, RunIdentity):
    """Score one trained run on the test set from its final checkpoint."""

    train_task = TrainRun

    def requires(self):
        return self.clone(self.train_task)

    def output(self):
        return luigi.LocalTarget(str(self.run_dir / EVALUATION_JSON))

    def done(self) -> bool:
        # An evaluation stands only while its run does: if the run lost a file, both are redone.
        return self.folder.evaluated

    def build(self):
        from tasks.evaluation.evaluate import evaluate_run

        site = site_settings()
        evaluate_run(
            self.run_dir,
            layout().test_arrow,
            settings=self.spec.settings,
            run_hash=self.spec.run_hash,
            seed=self.seed,
            intra_op_threads=site.intra_op_threads,
            inter_op_threads=site.inter_op_threads,
            device=site.device,
        )


class NightlyEvaluateRun(Nightly, EvaluateRun):
    train_task = NightlyTrainRun


def collect_runs(tasks: list[RunIdentity]) -> list[RunOnDisk]:
    """The runs a report, a tuning or a seed plan reads: each run's identity and its folder."""
    return [RunOnDisk(task.spec, task.folder) for task in tasks]


def train_task(spec: RunSpec, date=None) -> TrainRun:
    return NightlyTrainRun.of(spec, date=date) if date else TrainRun.of(spec)


def evaluate_task(spec: RunSpec, date=None) -> EvaluateRun:
    return NightlyEvaluateRun.of(spec, date=date) if date else EvaluateRun.of(spec)
