"""Nightly retraining: the history of nightly results, the regression check, and the trend plot.

The history is a Parquet dataset under `history/`, partitioned by night (`date=YYYY-MM-DD/`), one row
per optimizer entry at its best grid point: the rows of that night's report table. Writing a night
replaces its partition atomically, so rerunning a night never duplicates it. History is written outside
any task's output folder, so each write first sweeps the temp files that killed writers left in it.

Each partition carries, in its Parquet metadata, the sha256 of its night and rows (`partition_digest`),
written in the same atomic write. A partition whose rows no longer match it was edited or damaged after
the nightly wrote it: it is moved to `quarantine/` beside it and the read fails, naming it, so that no
regression alert is raised or hidden by numbers nobody computed. The digest catches edits by hand or by a
script; it is no signature, so it does not stop someone who recomputes it on purpose.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from tasks.core.errors import DataError
from tasks.core.faults import crash_point
from tasks.core.quarantine import quarantine
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
PARTITION_FILE = "summary.parquet"
DIGEST_KEY = b"fmnist.history.sha256"  # Parquet key-value metadata: the partition's digest


def partition_dir(history_dir: Path, date: str) -> Path:
    dt.date.fromisoformat(date)  # a partition name is always a real date
    return Path(history_dir) / f"{PARTITION}={date}"


def partition_digest(date: str, rows: Sequence[dict[str, Any]]) -> str:
    """sha256 of the night and its rows as stored (canonical JSON; floats as their exact repr)."""
    canonical = json.dumps({PARTITION: date, "rows": list(rows)}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def write_night(history_dir: Path, date: str, table_rows: Sequence[dict[str, Any]]) -> Path:
    """Store one night's report table rows as its history partition, with its digest, replacing any earlier copy."""
    rows = [{name: row.get(name) for name in HISTORY_SCHEMA.names} for row in table_rows]
    table = pa.Table.from_pylist(rows, schema=HISTORY_SCHEMA)
    digest = partition_digest(date, table.to_pylist())  # of the values as stored, after the schema's casts
    path = partition_dir(history_dir, date) / PARTITION_FILE
    sweep_temp_files(history_dir)
    with atomic_path(path, suffix=".parquet") as temp:
        pq.write_table(table.replace_schema_metadata({DIGEST_KEY: digest.encode()}), temp)
        crash_point("history.partition-written")
    return path


def read_history(history_dir: Path) -> list[dict[str, Any]]:
    """Every stored night's rows, each with its `date`, sorted by date then name.

    A partition that fails its digest is quarantined, and a DataError names each one (see the module
    docstring); the nights still standing are read as usual by the next call.
    """
    rows, refused = [], []
    for path in sorted(Path(history_dir).glob(f"{PARTITION}=*/{PARTITION_FILE}")):
        date = path.parent.name.partition("=")[2]
        night, problem = _read_partition(path, date)
        if problem is None:
            rows += night
        else:
            refused.append(_quarantine_partition(path, date, problem))
    if refused:
        raise DataError(" ".join(refused))
    return sorted(rows, key=lambda row: (row[PARTITION], row["name"]))


def _read_partition(path: Path, date: str) -> tuple[list[dict[str, Any]], str | None]:
    """(the night's rows with their date, None), or ([], why the partition cannot be believed)."""
    try:
        dt.date.fromisoformat(date)
        table = pq.read_table(path)
    except ValueError:
        return [], f"its folder {path.parent.name} names no date YYYY-MM-DD"
    except (pa.ArrowInvalid, OSError) as exc:
        return [], f"it cannot be read as Parquet ({exc})"
    if not table.schema.equals(HISTORY_SCHEMA, check_metadata=False):
        return [], f"expected the columns {HISTORY_SCHEMA.names}, found {table.schema.names}"
    recorded = (table.schema.metadata or {}).get(DIGEST_KEY)
    if recorded is None:
        return [], "it has no digest (written before digests were recorded, or rewritten without it)"
    night = table.to_pylist()
    if recorded.decode("ascii", "replace") != partition_digest(date, night):
        return [], "its rows or its night differ from those the nightly wrote (edited, or copied from another night)"
    return [{**row, PARTITION: date} for row in night], None


def _quarantine_partition(path: Path, date: str, problem: str) -> str:
    """Move a partition that cannot be believed aside; the sentence of the DataError that says so."""
    reason = f"{path}: the history of night {date} fails its digest check: {problem}"
    moved = quarantine(path, reason)
    return (
        f"{reason}. Its numbers cannot be trusted for the regression check, so it was moved to {moved}. Re-derive "
        f"that night from its own runs with `luigi --module pipeline NightlyHistory --date {date} --config <the "
        "config>`, then rerun the nightly."
    )


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
