"""Print where a finished artifact is: `python -m pipeline.where report [--config C] [--date D]`.

`make report` uses it to end with the path of report.html.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys

from pipeline.site import layout
from tasks.core.errors import PipelineError
from tasks.core.experiment import DEFAULT_CONFIG, load_experiment
from tasks.core.layout import iso_date


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipeline.where", description=__doc__)
    parser.add_argument("what", choices=["report"])
    parser.add_argument("--config", default=DEFAULT_CONFIG)
    parser.add_argument("--date", default=dt.date.today().isoformat())
    args = parser.parse_args(argv)
    try:
        date = iso_date(args.date, "--date")
        experiment = load_experiment(args.config)[0].experiment
        # Refuses a report folder symlinked into the artifacts root: its path is never printed.
        html = layout().report_dir(experiment, date) / "report.html"
    except PipelineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not html.exists():
        print(
            f"error: no report at {html}; run `luigi --module pipeline FullReport --config {args.config}`",
            file=sys.stderr,
        )
        return 1
    print(f"report: {html.resolve()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
