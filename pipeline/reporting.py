"""The comparison report: ExperimentReport(config, date), and FullReport, the users' main command."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import luigi

from pipeline.experiment import TunedRuns, plan_task, seed_plan_of, tuning_of, tuning_tasks
from pipeline.site import layout
from pipeline.training import EvaluateRun, collect_runs, evaluate_task
from tasks.core.config import ExperimentConfig
from tasks.core.experiment import DEFAULT_CONFIG, chosen_rates, config_hash, load_experiment
from tasks.core.runs import final_specs, tuned_entries


def report_inputs(
    config_path: str, title: str, date: str, runs: list[EvaluateRun], tuning: dict, plan: dict | None, **extra
):
    """What the report of these (evaluated) runs is built from; `extra`: alerts and extra figures."""
    from tasks.reporting.report import ReportInputs

    config, text = load_experiment(config_path)
    return ReportInputs(
        experiment=config.experiment,
        title=title,
        date=date,
        config_hash=config_hash(config),
        config_text=text,
        runs=collect_runs(runs),
        test_arrow=layout().test_arrow,
        targets=config.targets,
        tuning=tuning,
        equivalence_margin=config.equivalence_margin,
        split_varies=config.split.varies,
        seed_plan=plan["plan"] if plan else None,
        **extra,
    )


def report_record(config_path: str, config: ExperimentConfig, tuning: dict) -> dict:
    """What report.json records beside the report's numbers: the config, its hash and the tuning."""
    return {"config": str(config_path), "config_hash": config_hash(config), "tuning": tuning}


def owned_experiment(config_path: str) -> ExperimentConfig:
    """The config at `config_path`, once it owns its `experiment:` name (red team 4).

    Reports (`reports/<experiment>/`) and the nightly history (`history/<experiment>/`) are named by the
    experiment alone, so a second config file with the same name would take the first's files as its own.
    The first config to use a name is recorded in `reports/<experiment>/owner.json`; another file that
    names it is refused while the owner still exists and still names it (a moved, deleted or renamed
    owner hands the name over). `x.yaml` and `./x.yaml` are one file.
    """
    from tasks.core.locks import target_lock
    from tasks.core.storage import write_json_atomic

    config = load_experiment(config_path)[0]
    owner_path = layout().experiment_owner(config.experiment)
    mine = str(Path(config_path).resolve())
    if _recorded_owner(owner_path) != mine:
        with target_lock(owner_path):
            check_not_rival(config_path, config)
            if _recorded_owner(owner_path) != mine:
                write_json_atomic(owner_path, {"config": mine, "experiment": config.experiment})
    return config


def check_not_rival(config_path: str, config: ExperimentConfig) -> None:
    """A ConfigError when another, still existing config file owns `config.experiment` (owned_experiment).
    Reads only: `pipeline.where` asks it too, so that it never points at another config's report."""
    from tasks.core.errors import ConfigError, PipelineError

    owner_path = layout().experiment_owner(config.experiment)
    mine = str(Path(config_path).resolve())
    found = _recorded_owner(owner_path)
    if found is None or found == mine or not Path(found).is_file():
        return
    try:
        rival = not Path(found).samefile(mine) and load_experiment(found)[0].experiment == config.experiment
    except (PipelineError, OSError, ValueError):  # an unreadable or invalid owner names nothing now
        return
    if rival:
        raise ConfigError(
            f"{config_path}: experiment name {config.experiment!r} already belongs to the config {found} "
            f"(recorded in {owner_path}); reports and nightly history are named by the experiment, so two "
            "configs with one name would overwrite and reuse each other's. Give one of them another "
            "`experiment:` name, or, if this file replaces that one, delete or rename it, and rerun"
        )


def _recorded_owner(owner_path: Path) -> str | None:
    from tasks.core.storage import read_json

    try:
        found = read_json(owner_path).get("config")
    except (OSError, ValueError, AttributeError):
        return None
    return found if isinstance(found, str) else None


def publish_once(task: luigi.Task, publish) -> bool:
    """Run `publish()` under the lock of the task's report.json, unless the report was finished while this
    process waited for it (red team 5: `x.yaml` and `./x.yaml` are two Luigi tasks writing one folder).
    Whether this process built it."""
    from tasks.core.locks import target_lock

    with target_lock(task.output().path):
        if task.complete():
            return False
        publish()
        return True


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
        return owned_experiment(self.config)

    def requires(self):
        untuned = [evaluate_task(spec) for spec in final_specs(self.experiment)]
        # Each tuned entry's final runs start when its own tuning is done (TunedRuns), not all entries'.
        tuned = [TunedRuns(config=self.config, name=entry.name) for entry in tuned_entries(self.experiment)]
        needs = {"tuning": tuning_tasks(self.config), "runs": untuned, "tuned": tuned}
        planned = plan_task(self.config)
        return needs | ({"plan": planned} if planned else {})

    def output(self):
        out_dir = layout().report_dir(self.experiment.experiment, self.date.isoformat())
        return luigi.LocalTarget(str(out_dir / "report.json"))

    def complete(self):
        return self.problem() is None

    def problem(self) -> str | None:
        """Why the dated folder holds no finished report of this config (None: it does); pipeline.where
        asks the same question, so it never sends anyone to a FullReport that would do nothing."""
        from tasks.reporting.report import report_problem

        return report_problem(Path(self.output().path).parent, config_hash(self.experiment))

    def run(self):
        config = self.experiment
        tuning = tuning_of(self.requires()["tuning"])
        plan = seed_plan_of(self.requires().get("plan"))
        counts = plan["seeds"] if plan else None
        finals = [evaluate_task(spec) for spec in final_specs(config, chosen_rates(tuning), seed_counts=counts)]
        yield finals
        from tasks.reporting.report import publish_report

        inputs = report_inputs(
            self.config, f"Optimizer comparison: {config.experiment}", self.date.isoformat(), finals, tuning, plan
        )
        publish_once(
            self,
            lambda: publish_report(Path(self.output().path).parent, report_record(self.config, config, tuning), inputs),
        )


class FullReport(luigi.WrapperTask):
    """The main command: `luigi --module pipeline FullReport [--config configs/x.yaml]`."""

    config = luigi.Parameter(default=DEFAULT_CONFIG)
    date = luigi.DateParameter(default=dt.date.today())

    def requires(self):
        return ExperimentReport(config=self.config, date=self.date)
