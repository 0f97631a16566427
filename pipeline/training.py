"""Training and evaluation of one run: TrainRun → EvaluateRun."""

from __future__ import annotations

import luigi
from luigi.freezing import recursively_unfreeze

from pipeline.data import PrepareData
from pipeline.settings import layout, settings
from tasks.config import RunSpec
from tasks.storage import write_json_atomic


class RunTask(luigi.Task):
    """Parameters that identify one run: the optimizer entry's name, its settings, and the seed.

    `settings` is the plain-JSON dict from `tasks.config.run_settings`; the run folder carries its hash.
    `namespace` puts a run under `runs/<namespace>/` (the nightly runs use `nightly/<date>`).
    """

    name = luigi.Parameter()
    settings = luigi.DictParameter()
    seed = luigi.IntParameter()
    namespace = luigi.Parameter(default="")

    @property
    def spec(self) -> RunSpec:
        return RunSpec(name=self.name, settings=recursively_unfreeze(self.settings), seed=self.seed)

    @property
    def run_dir(self):
        return layout().run_dir(self.spec, self.namespace)

    def split_task(self) -> PrepareData:
        split = self.spec.settings["split"]
        return PrepareData(validation_per_class=split["validation_per_class"], split_seed=split["seed"])


class TrainRun(RunTask):
    """Train one (model, optimizer, hyper-parameters, seed) run; run.json, written last, marks it done."""

    resources = {"training": 1}

    def requires(self):
        return self.split_task()

    def output(self):
        return luigi.LocalTarget(str(self.run_dir / "run.json"))

    def run(self):
        from tasks.train import train_run  # TensorFlow loads here, never at scheduling time

        site = settings()
        self.set_tracking_url(self.run_dir.resolve().as_uri())
        train_run(
            self.spec.settings,
            self.seed,
            layout().train_arrow,
            self.input().path,
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
        return TrainRun(name=self.name, settings=self.settings, seed=self.seed, namespace=self.namespace)

    def output(self):
        return luigi.LocalTarget(str(self.run_dir / "evaluation.json"))

    def run(self):
        from tasks.evaluate import evaluate_run

        site = settings()
        result = evaluate_run(
            self.run_dir,
            layout().test_arrow,
            intra_op_threads=site.intra_op_threads,
            inter_op_threads=site.inter_op_threads,
        )
        write_json_atomic(self.output().path, result)
