"""Nightly retraining: NightlyReport(date) retrains every run of a config into dated folders, compares
the night with the previous ones, and fails loudly on a regression.

Backfill: `luigi --module pipeline RangeDaily --of NightlyReport --start YYYY-MM-DD`.
"""

from __future__ import annotations

import datetime as dt
import tempfile
from pathlib import Path

import luigi

from pipeline.experiment import DEFAULT_CONFIG, config_hash, load_experiment
from pipeline.reporting import collect_runs, evaluate_tasks
from pipeline.settings import layout
from tasks.core.config import expand_runs
from tasks.core.errors import PipelineError
from tasks.core.storage import write_json_atomic


class RegressionAlert(PipelineError):
    """Tonight's test accuracy fell beyond the configured threshold."""


class NightlyReport(luigi.Task):
    """One night: retrain and evaluate every run of the config, report, record history, check regressions.

    `date` comes first so that RangeDaily can fill it in. A night is done when its report.json exists;
    a night with a regression alert writes its report (alert at the top) and history, then fails, so
    cron or a monitor sees a non-zero exit, and a rerun reports and fails again until the cause is fixed.
    """

    date = luigi.DateParameter(default=dt.date.today())
    config = luigi.Parameter(default=DEFAULT_CONFIG)

    @property
    def night(self) -> str:
        return self.date.isoformat()

    def requires(self):
        config = load_experiment(self.config)[0]
        return evaluate_tasks(expand_runs(config, self.date), night=self.night)

    def output(self):
        return luigi.LocalTarget(str(layout().nightly_report_dir(self.night) / "report.json"))

    def run(self):
        from tasks.reporting import figures
        from tasks.reporting import history as nightly
        from tasks.reporting.comparison import compare
        from tasks.reporting.report import build_report

        config, text = load_experiment(self.config)
        paths = layout()
        runs = collect_runs(self.requires())
        rows = compare(runs).rows
        history = [row for row in nightly.read_history(paths.history_dir) if row["date"] < self.night]
        policy = config.nightly
        alerts = nightly.regression_alerts(
            history, self.night, rows, policy.regression_window, policy.regression_threshold
        )
        nightly.write_night(paths.history_dir, self.night, rows)
        trend = [row for row in nightly.read_history(paths.history_dir) if row["date"] <= self.night]
        out_dir = Path(self.output().path).parent
        with tempfile.TemporaryDirectory() as scratch:
            trend_png = figures.accuracy_trend(Path(scratch) / "trend.png", *nightly.trend_series(trend))
            result = build_report(
                out_dir,
                experiment=config.experiment,
                title=f"Nightly retraining: {config.experiment}",
                date=self.night,
                config_hash=config_hash(config),
                config_text=text,
                runs=runs,
                test_arrow=paths.test_arrow,
                alerts=alerts,
                extra_figures=[("Test accuracy over the nights", trend_png)],
            )
        if alerts:
            raise RegressionAlert(
                f"nightly {self.night}: {len(alerts)} regression(s): "
                + "; ".join(alerts)
                + f". The report with the alert is at {result['html']}"
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
