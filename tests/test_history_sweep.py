"""A write killed inside `history/` leaves a temp file there; the next night's write sweeps it."""

from __future__ import annotations

import os
import subprocess

from tasks.core.storage import TEMP_MARKER, WRITER_ID
from tasks.reporting.history import read_history, write_night

ROW = {"name": "sgd", "optimizer": "sgd", "learning_rate": 0.1, "test_accuracy_mean": 0.8, "total_runs": 1}


def dead_pid() -> int:
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


def test_writing_a_night_sweeps_temp_files_of_killed_history_writers(tmp_path):
    history = tmp_path / "history"
    killed = history / "date=2026-01-01" / f".summary.parquet{TEMP_MARKER}{WRITER_ID}-{dead_pid()}-abcd1234.parquet"
    killed.parent.mkdir(parents=True)
    killed.write_bytes(b"PAR1 half a parquet file")
    alive = history / "date=2026-01-01" / f".summary.parquet{TEMP_MARKER}{WRITER_ID}-{os.getpid()}-efgh5678.parquet"
    alive.write_bytes(b"PAR1 a write in progress")

    write_night(history, "2026-01-02", [ROW])

    assert not killed.exists()
    assert alive.exists()  # a live writer's file is never touched
    assert [(row["date"], row["name"]) for row in read_history(history)] == [("2026-01-02", "sgd")]
