"""The comparison report: ExperimentReport(config, date), and FullReport, the users' main command."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import luigi

from pipeline.experiment import DEFAULT_CONFIG, config_hash, load_experiment
from pipeline.settings import layout
from pipeline.training import EvaluateRun
from tasks.core.config import ExperimentConfig, RunSpec, expand_runs
from tasks.core.runfiles import RUN_JSON
from tasks.core.storage import read_json, write_json_atomic


def evaluate_tasks(specs: list[RunSpec], night: str = "") -> list[EvaluateRun]:
    return [EvaluateRun(name=spec.name, settings=spec.settings, seed=spec.seed, night=night) for spec in specs]


def collect_runs(tasks: list[EvaluateRun]) -> list[dict]:
    """The per-run dicts that the report reads: identity, run.json and evaluation.json."""
    runs = []
    for task in tasks:
        spec = task.spec
        optimizer = spec.settings["optimizer"]
        runs.append(
            {
                "name": spec.name,
                "optimizer": optimizer["name"],
                "learning_rate": optimizer["learning_rate"],
                "params": optimizer["params"],
                "seed": spec.seed,
                "run_hash": spec.run_hash,
                "run_dir": task.run_dir,
                "run": read_json(task.run_dir / RUN_JSON),
                "evaluation": read_json(task.output().path),
            }
        )
    return runs


class ExperimentReport(luigi.Task):
    """Every run of one experiment config, evaluated and compared in one dated report folder.

    The folder is `reports/<experiment>/<date>/`; `report.json`, written last, records the config hash,
    so editing the config the same day makes the report (and only the affected runs) rerun.
    """

    config = luigi.Parameter(default=DEFAULT_CONFIG)
    date = luigi.DateParameter(default=dt.date.today())

    @property
    def experiment(self) -> ExperimentConfig:
        return load_experiment(self.config)[0]

    def requires(self):
        return evaluate_tasks(expand_runs(self.experiment))

    def output(self):
        out_dir = layout().report_dir(self.experiment.experiment, self.date.isoformat())
        return luigi.LocalTarget(str(out_dir / "report.json"))

    def complete(self):
        if not self.output().exists():
            return False
        try:
            return read_json(self.output().path).get("config_hash") == config_hash(self.experiment)
        except (OSError, ValueError):
            return False

    def run(self):
        from tasks.reporting.report import build_report

        config, text = load_experiment(self.config)
        out_dir = Path(self.output().path).parent
        result = build_report(
            out_dir,
            experiment=config.experiment,
            title=f"Optimizer comparison: {config.experiment}",
            date=self.date.isoformat(),
            config_hash=config_hash(config),
            config_text=text,
            runs=collect_runs(self.requires()),
            test_arrow=layout().test_arrow,
        )
        write_json_atomic(
            self.output().path,
            {
                "config": str(self.config),
                "config_hash": config_hash(config),
                "html": str(result["html"]),
                "table": result["table"],
            },
        )


class FullReport(luigi.WrapperTask):
    """The main command: `luigi --module pipeline FullReport [--config configs/x.yaml]`."""

    config = luigi.Parameter(default=DEFAULT_CONFIG)
    date = luigi.DateParameter(default=dt.date.today())

    def requires(self):
        return ExperimentReport(config=self.config, date=self.date)
