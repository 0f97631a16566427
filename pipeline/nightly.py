"""Nightly retraining, per config: NightlyHistory(date) retrains and records a night; NightlyReport(date)
reports it against the nights before it and fails loudly on a regression.

Outputs are per experiment: `reports/<experiment>/nightly/<date>/` and `history/<experiment>/`.
A backfill must not depend on the order the nights happen to run in, so with `since` set (the first night
of the backfill), each night's history waits for the previous night's. Backfill:
`luigi --module pipeline RangeDaily --of NightlyReport --start D --of-params '{"config": C, "since": "D"}'`.
"""

from __future__ import annotations

import datetime as dt
import tempfile
from pathlib import Path

import luigi

from pipeline.experiment import tuning_of, tuning_tasks
from pipeline.reporting import owned_experiment, report_inputs, report_record
from pipeline.site import layout
from pipeline.training import collect_runs, evaluate_task
from tasks.core.errors import ConfigError, PipelineError
from tasks.core.experiment import DEFAULT_CONFIG, chosen_rates
from tasks.core.runs import final_specs


class RegressionAlert(PipelineError):
    """Tonight's test accuracy fell beyond the configured threshold."""


class NightTask(luigi.Task):
    """`date` comes first so that RangeDaily can fill it in."""

    date = luigi.DateParameter(default=dt.date.today())
    config = luigi.Parameter(default=DEFAULT_CONFIG)
    since = luigi.Parameter(
        default="", significant=False, description="first night of a backfill (YYYY-MM-DD): nights run in order"
    )

    @property
    def night(self) -> str:
        return self.date.isoformat()

    @property
    def experiment(self):
        return owned_experiment(self.config)

    def night_runs(self, tuning: dict | None = None):
        """The night's evaluation tasks (tuned entries at the rate their tuning chose)."""
        tuning = tuning_of(tuning_tasks(self.config)) if tuning is None else tuning
        specs = final_specs(self.experiment, chosen_rates(tuning), self.date)
        return [evaluate_task(spec, self.date) for spec in specs]

    def previous_night(self) -> NightlyHistory | None:
        if not self.since:
            return None
        try:
            first = dt.date.fromisoformat(self.since)
        except ValueError:
            raise ConfigError(f"{self.task_family} --since: expected a date YYYY-MM-DD, found {self.since!r}") from None
        previous = self.date - dt.timedelta(days=1)
        if previous < first:
            return None
        return NightlyHistory(date=previous, config=self.config, since=self.since)


class NightlyHistory(NightTask):
    """Retrain and evaluate every final run of the config in the night's folders; record the night's table."""

    def requires(self):
        needs = {"tuning": tuning_tasks(self.config)}
        previous = self.previous_night()
        if previous is not None:
            needs["previous"] = previous
        return needs

    def output(self):
        from tasks.reporting.history import partition_dir

        path = partition_dir(layout().history_dir(self.experiment.experiment), self.night) / "summary.parquet"
        return luigi.LocalTarget(str(path))

    def run(self):
        runs = self.night_runs()
        yield runs
        from tasks.reporting import history
        from tasks.reporting.comparison import compare

        rows = compare(collect_runs(runs)).rows
        history.write_night(layout().history_dir(self.experiment.experiment), self.night, rows)


class NightlyReport(NightTask):
    """One night's report against the nights before it. A regression writes the report (alert at the top),
    then fails, so cron sees a non-zero exit; a rerun reports and fails again until the cause is fixed."""

    def requires(self):
        return NightlyHistory(date=self.date, config=self.config, since=self.since)

    def output(self):
        out_dir = layout().nightly_report_dir(self.experiment.experiment, self.night)
        return luigi.LocalTarget(str(out_dir / "report.json"))

    def run(self):
        from tasks.reporting import figures, history
        from tasks.reporting.report import publish_report

        config = self.experiment
        paths = layout()
        tuning = tuning_of(tuning_tasks(self.config))
        runs = self.night_runs(tuning)
        stored = history.read_history(paths.history_dir(config.experiment))
        nights = [row for row in stored if row["date"] <= self.night]
        tonight = [row for row in nights if row["date"] == self.night]
        before = [row for row in nights if row["date"] < self.night]
        policy = config.nightly
        regressions = history.find_regressions(
            before, self.night, tonight, policy.regression_window, policy.regression_threshold
        )
        out_dir = Path(self.output().path).parent
        with tempfile.TemporaryDirectory() as scratch:
            trend_png = figures.accuracy_trend(Path(scratch) / "trend.png", *history.trend_series(nights))
            inputs = report_inputs(
                self.config,
                f"Nightly retraining: {config.experiment}",
                self.night,
                runs,
                tuning,
                None,  # the nightly retrains the first seeds (an adaptive comparison's pilot): no seed plan
                alerts=[regression.message for regression in regressions],
                extra_figures=[("Test accuracy over the nights", trend_png)],
            )
            result = publish_report(out_dir, report_record(self.config, config, tuning), inputs)
        if regressions:
            raise RegressionAlert(
                history.alert_text(self.night, self.config, config.experiment, regressions, result["html"])
            )

    def on_failure(self, exception):
        """What luigi sends as this failure's explanation: to luigid, and as the body of its failure mail
        (docs/alerts.md). A regression is told by its alert alone; any other failure by its traceback."""
        if isinstance(exception, RegressionAlert):
            return f"RegressionAlert: {exception}"
        return super().on_failure(exception)
