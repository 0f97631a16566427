"""Nightly retraining: the history of nightly results, the regression check, and the trend plot.

The history is a Parquet dataset under `history/`, partitioned by night (`date=YYYY-MM-DD/`), one row
per optimizer entry at its best grid point: the rows of that night's report table. Writing a night
replaces its partition atomically, so rerunning a night never duplicates it. History is written outside
any task's output folder, so each write first sweeps the temp files that killed writers left in it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
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


def regression_alerts(
    history: Sequence[dict[str, Any]], date: str, tonight: Sequence[dict[str, Any]], window: int, threshold: float
) -> list[str]:
    """Alerts for entries whose test accuracy tonight fell more than `threshold` below the mean of the
    previous `window` nights that have a value for it. Nights on or after `date` are not compared."""
    alerts = []
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
        baseline = sum(previous) / len(previous)
        current = row.get("test_accuracy_mean")
        if current is None:
            alerts.append(
                f"{name}: every run diverged tonight; the previous {len(previous)} night(s) "
                f"averaged test accuracy {baseline:.4f}"
            )
        elif baseline - current > threshold:
            alerts.append(
                f"{name}: test accuracy {current:.4f} is {baseline - current:.4f} below the mean "
                f"{baseline:.4f} of the previous {len(previous)} night(s) (threshold {threshold:.4f})"
            )
    return alerts


def trend_series(history: Sequence[dict[str, Any]]) -> tuple[list[str], dict[str, list[float | None]]]:
    """(dates, {entry name: test accuracy per date or None}) for the trend plot."""
    dates = sorted({row[PARTITION] for row in history})
    names = sorted({row["name"] for row in history})
    value = {(row[PARTITION], row["name"]): row["test_accuracy_mean"] for row in history}
    return dates, {name: [value.get((date, name)) for date in dates] for name in names}
