"""Nightly retraining: the history of nightly results, the regression check, and the trend plot.

The history is a Parquet dataset under `history/`, partitioned by night (`date=YYYY-MM-DD/`), one row
per optimizer entry at its best grid point: the rows of that night's report table. Writing a night
replaces its partition atomically, so rerunning a night never duplicates it. History is written outside
any task's output folder, so each write first sweeps the temp files that killed writers left in it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from tasks.core.errors import DataError
from tasks.core.storage import atomic_path, sweep_temp_files

HISTORY_SCHEMA = pa.schema(
    [
        ("name", pa.string()),
        ("optimizer", pa.string()),
        ("learning_rate", pa.float64()),
        ("run_hash", pa.string()),
        ("test_accuracy_mean", pa.float64()),
        ("test_accuracy_std", pa.float64()),
        ("diverged_runs", pa.int64()),
        ("total_runs", pa.int64()),
        ("seconds_per_epoch", pa.float64()),
    ]
)
PARTITION = "date"


def partition_dir(history_dir: Path, date: str) -> Path:
    dt.date.fromisoformat(date)  # a partition name is always a real date
    return Path(history_dir) / f"{PARTITION}={date}"


def write_night(history_dir: Path, date: str, table_rows: Sequence[dict[str, Any]]) -> Path:
    """Store one night's report table rows as its history partition, replacing any earlier copy."""
    rows = [{name: row.get(name) for name in HISTORY_SCHEMA.names} for row in table_rows]
    path = partition_dir(history_dir, date) / "summary.parquet"
    sweep_temp_files(history_dir)
    with atomic_path(path, suffix=".parquet") as temp:
        pq.write_table(pa.Table.from_pylist(rows, schema=HISTORY_SCHEMA), temp)
    return path


def read_history(history_dir: Path) -> list[dict[str, Any]]:
    """Every stored night's rows, each with its `date`, sorted by date then name."""
    root = Path(history_dir)
    if not any(root.glob(f"{PARTITION}=*/*.parquet")):
        return []
    try:
        dataset = ds.dataset(
            str(root),
            format="parquet",
            schema=HISTORY_SCHEMA.append(pa.field(PARTITION, pa.string())),
            partitioning=ds.partitioning(pa.schema([(PARTITION, pa.string())]), flavor="hive"),
            exclude_invalid_files=False,
        )
        rows = dataset.to_table().to_pylist()
    except (pa.ArrowInvalid, OSError) as exc:
        raise DataError(
            f"{root}: the nightly history cannot be read ({exc}); move the bad partition aside and rerun"
        ) from None
    return sorted(rows, key=lambda row: (row[PARTITION], row["name"]))


@dataclass(frozen=True)
class Regression:
    """One entry whose test accuracy tonight fell too far below its recent nights (the facts of an alert)."""

    name: str
    optimizer: str | None
    tonight: float | None  # None: every run diverged tonight
    window_mean: float
    window_nights: int
    threshold: float

    @property
    def drop(self) -> float | None:
        return None if self.tonight is None else self.window_mean - self.tonight

    @property
    def message(self) -> str:
        who = self.name if self.optimizer is None else f"{self.name} (optimizer {self.optimizer})"
        if self.tonight is None:
            return (
                f"{who}: every run diverged tonight; the previous {self.window_nights} night(s) "
                f"averaged test accuracy {self.window_mean:.4f}"
            )
        return (
            f"{who}: test accuracy {self.tonight:.4f} is {self.drop:.4f} below the mean "
            f"{self.window_mean:.4f} of the previous {self.window_nights} night(s) (threshold {self.threshold:.4f})"
        )


def find_regressions(
    history: Sequence[dict[str, Any]], date: str, tonight: Sequence[dict[str, Any]], window: int, threshold: float
) -> list[Regression]:
    """Entries whose test accuracy tonight fell more than `threshold` below the mean of the previous
    `window` nights that have a value for it, or that diverged in every run. Nights on or after `date`
    are not compared."""
    found = []
    earlier_dates = sorted({row[PARTITION] for row in history if row[PARTITION] < date})
    for row in tonight:
        name = row["name"]
        previous = [
            r["test_accuracy_mean"]
            for r in history
            if r["name"] == name and r[PARTITION] in earlier_dates and r["test_accuracy_mean"] is not None
        ]
        previous = previous[-window:]
        if not previous:
            continue
        regression = Regression(
            name=name,
            optimizer=row.get("optimizer"),
            tonight=row.get("test_accuracy_mean"),
            window_mean=sum(previous) / len(previous),
            window_nights=len(previous),
            threshold=threshold,
        )
        if regression.drop is None or regression.drop > threshold:
            found.append(regression)
    return found


def alert_text(date: str, config: str, experiment: str, regressions: Sequence[Regression], report: Path) -> str:
    """The regression alert of a night, as its log line and mail say it: the night, the config, one line
    per regressed entry (tonight, the window's mean, the drop), and the report's path last."""
    lines = [f"nightly {date} of {config} (experiment {experiment}): {len(regressions)} regression(s)"]
    lines += [f"- {regression.message}" for regression in regressions]
    lines.append(f"The report with the alert is at {Path(report).absolute()}")
    return "\n".join(lines)


def trend_series(history: Sequence[dict[str, Any]]) -> tuple[list[str], dict[str, list[float | None]]]:
    """(dates, {entry name: test accuracy per date or None}) for the trend plot."""
    dates = sorted({row[PARTITION] for row in history})
    names = sorted({row["name"] for row in history})
    value = {(row[PARTITION], row["name"]): row["test_accuracy_mean"] for row in history}
    return dates, {name: [value.get((date, name)) for date in dates] for name in names}
