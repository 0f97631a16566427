"""Print where a finished artifact is: `python -m pipeline.where report [--config C] [--date D]`.

`make report` uses it to end with the path of report.html.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys

from pipeline.reporting import check_not_rival
from pipeline.site import layout
from tasks.core.errors import PipelineError
from tasks.core.experiment import DEFAULT_CONFIG, config_hash, load_experiment
from tasks.core.layout import iso_date
from tasks.reporting.report import report_problem


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipeline.where", description=__doc__)
    parser.add_argument("what", choices=["report"])
    parser.add_argument("--config", default=DEFAULT_CONFIG)
    parser.add_argument("--date", default=dt.date.today().isoformat())
    args = parser.parse_args(argv)
    try:
        date = iso_date(args.date, "--date")
        config = load_experiment(args.config)[0]
        check_not_rival(args.config, config)  # another config file's report is not this one's
        # Refuses a report folder symlinked into the artifacts root: its path is never printed.
        folder = layout().report_dir(config.experiment, date)
        html = folder / "report.html"
        # FullReport's own test of "finished" (pipeline.reporting): where it would rebuild, this says so.
        problem = report_problem(folder, config_hash(config))
    except PipelineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if problem is not None:
        print(
            f"error: no finished report at {html} ({problem}); run "
            f"`luigi --module pipeline FullReport --config {args.config} --date {date}`",
            file=sys.stderr,
        )
        return 1
    print(f"report: {html.resolve()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
