"""The comparison report: ExperimentReport(config, date), and FullReport, the users' main command."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import luigi

from pipeline.experiment import TunedRuns, tuning_of, tuning_tasks
from pipeline.site import layout
from pipeline.training import EvaluateRun, evaluate_task
from tasks.core.config import ExperimentConfig
from tasks.core.experiment import DEFAULT_CONFIG, chosen_rates, config_hash, load_experiment
from tasks.core.runs import RunOnDisk, final_specs, tuned_entries
from tasks.core.storage import read_json


def collect_runs(tasks: list[EvaluateRun]) -> list[RunOnDisk]:
    """The runs the report reads: each run's identity and its folder."""
    return [RunOnDisk(task.spec, task.folder) for task in tasks]


def report_record(config_path: str, config: ExperimentConfig, tuning: dict) -> dict:
    """What report.json records beside the report's numbers: the config, its hash and the tuning."""
    return {"config": str(config_path), "config_hash": config_hash(config), "tuning": tuning}


class ExperimentReport(luigi.Task):
    """Every final run of one experiment config, evaluated and compared in one dated report folder.

    The folder is `reports/<experiment>/<date>/`; `report.json`, written last, records the config hash,
    so editing the config the same day makes the report (and only the affected runs) rerun. Each tuned
    entry's final runs come from its TunedRuns, which starts them as soon as that entry's tuning is done.
    """

    config = luigi.Parameter(default=DEFAULT_CONFIG)
    date = luigi.DateParameter(default=dt.date.today())

    @property
    def experiment(self) -> ExperimentConfig:
        return load_experiment(self.config)[0]

    def requires(self):
        untuned = [evaluate_task(spec) for spec in final_specs(self.experiment)]
        # Each tuned entry's final runs start when its own tuning is done (TunedRuns), not all entries'.
        tuned = [TunedRuns(config=self.config, name=entry.name) for entry in tuned_entries(self.experiment)]
        return {"tuning": tuning_tasks(self.config), "runs": untuned, "tuned": tuned}

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
        config, text = load_experiment(self.config)
        tuning = tuning_of(self.requires()["tuning"])
        finals = [evaluate_task(spec) for spec in final_specs(config, chosen_rates(tuning))]
        yield finals
        from tasks.reporting.report import ReportInputs, publish_report

        publish_report(
            Path(self.output().path).parent,
            report_record(self.config, config, tuning),
            ReportInputs(
                experiment=config.experiment,
                title=f"Optimizer comparison: {config.experiment}",
                date=self.date.isoformat(),
                config_hash=config_hash(config),
                config_text=text,
                runs=collect_runs(finals),
                test_arrow=layout().test_arrow,
                targets=config.targets,
                tuning=tuning,
            ),
        )


class FullReport(luigi.WrapperTask):
    """The main command: `luigi --module pipeline FullReport [--config configs/x.yaml]`."""

    config = luigi.Parameter(default=DEFAULT_CONFIG)
    date = luigi.DateParameter(default=dt.date.today())

    def requires(self):
        return ExperimentReport(config=self.config, date=self.date)
