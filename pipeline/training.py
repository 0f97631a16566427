"""Training and evaluation of one run: TrainRun → EvaluateRun."""

from __future__ import annotations

import datetime as dt

import luigi
from luigi.freezing import recursively_unfreeze

from pipeline.data import PrepareData, VerifyData
from pipeline.settings import layout, settings
from tasks.core.config import RunSpec
from tasks.core.faults import crash_point
from tasks.core.runfiles import EVALUATION_JSON, RUN_JSON
from tasks.core.storage import write_json_atomic


class RunTask(luigi.Task):
    """Parameters that identify one run: the optimizer entry's name, its settings, and the seed.

    `settings` is the plain-JSON dict from `tasks.core.config.run_settings`; the run folder carries its hash.
    `night` (an ISO date) makes it a nightly retraining run under `runs/nightly/<night>/`, which first
    re-verifies the data files.
    """

    name = luigi.Parameter()
    settings = luigi.DictParameter()
    seed = luigi.IntParameter()
    night = luigi.Parameter(default="")

    @property
    def spec(self) -> RunSpec:
        return RunSpec(name=self.name, settings=recursively_unfreeze(self.settings), seed=self.seed)

    @property
    def run_dir(self):
        return layout().run_dir(self.spec, self.night)

    def data_tasks(self) -> dict:
        split = self.spec.settings["split"]
        needs = {"split": PrepareData(validation_per_class=split["validation_per_class"], split_seed=split["seed"])}
        if self.night:
            needs["verified"] = VerifyData(date=dt.date.fromisoformat(self.night))
        return needs


class TrainRun(RunTask):
    """Train one (model, optimizer, hyper-parameters, seed) run; run.json, written last, marks it done."""

    @property
    def resources(self):
        return {settings().training_resource: 1}

    def requires(self):
        return self.data_tasks()

    def output(self):
        return luigi.LocalTarget(str(self.run_dir / RUN_JSON))

    def run(self):
        from tasks.training.loop import train_run  # TensorFlow loads here, never at scheduling time

        site = settings()
        self.set_tracking_url(self.run_dir.resolve().as_uri())
        train_run(
            self.spec.settings,
            self.seed,
            layout().train_arrow,
            self.input()["split"].path,
            self.run_dir,
            intra_op_threads=site.intra_op_threads,
            inter_op_threads=site.inter_op_threads,
            progress=self._report_progress,
        )

    def _report_progress(self, fraction: float, message: str) -> None:
        self.set_progress_percentage(round(100 * fraction, 1))
        self.set_status_message(message)


class EvaluateRun(RunTask):
    """Score one trained run on the test set from its standalone checkpoint."""

    def requires(self):
        return TrainRun(name=self.name, settings=self.settings, seed=self.seed, night=self.night)

    def output(self):
        return luigi.LocalTarget(str(self.run_dir / EVALUATION_JSON))

    def run(self):
        from tasks.evaluation.evaluate import evaluate_run

        site = settings()
        result = evaluate_run(
            self.run_dir,
            layout().test_arrow,
            settings=self.spec.settings,
            run_hash=self.spec.run_hash,
            seed=self.seed,
            intra_op_threads=site.intra_op_threads,
            inter_op_threads=site.inter_op_threads,
        )
        crash_point("evaluate.scored")
        write_json_atomic(self.output().path, result)
