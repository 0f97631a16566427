"""Red team 7 (history): a nightly history partition edited after it was written is never believed.

Edited upward, a past night raised a false regression alert; edited downward, it would hide a real one.
Each partition carries a digest of its rows and its date, written with it; a partition that fails it is
moved to quarantine (never deleted) and the read fails, naming the partition, where it went and how to
re-derive it.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tasks.core.errors import DataError
from tasks.core.storage import QUARANTINE_DIR
from tasks.reporting.history import find_regressions, partition_dir, read_history, write_night

NIGHTS = ("2026-11-28", "2026-11-29", "2026-11-30")
TONIGHT = "2026-12-01"
WINDOW, THRESHOLD = 3, 0.02


def row(accuracy: float) -> dict:
    return {"name": "sgd", "optimizer": "sgd", "learning_rate": 0.1, "test_accuracy_mean": accuracy, "total_runs": 3}


def edit_accuracy(path: Path, accuracy: float, *, keep_metadata: bool = True) -> None:
    """Rewrite a partition with another accuracy, as a careful hand would: same schema, same metadata."""
    table = pq.read_table(path)
    edited = table.set_column(
        table.schema.get_field_index("test_accuracy_mean"),
        "test_accuracy_mean",
        pa.array([accuracy] * table.num_rows, pa.float64()),
    )
    pq.write_table(edited if keep_metadata else edited.replace_schema_metadata(None), path)


def history_with(tmp_path: Path, past: float, tonight: float) -> Path:
    history = tmp_path / "history" / "tiny"
    for night in NIGHTS:
        write_night(history, night, [row(past)])
    write_night(history, TONIGHT, [row(tonight)])
    return history


def alerts_of(history: Path) -> list[str]:
    stored = read_history(history)
    before = [r for r in stored if r["date"] < TONIGHT]
    tonight = [r for r in stored if r["date"] == TONIGHT]
    return find_regressions(before, TONIGHT, tonight, WINDOW, THRESHOLD)


@pytest.mark.parametrize(
    "past, tonight, edited_to, honest_alerts",
    [
        (0.80, 0.80, 0.95, 0),  # edited upward: tonight would look like a regression
        (0.80, 0.70, 0.70, 1),  # edited downward: tonight's real regression would be hidden
    ],
    ids=["upward-false-alert", "downward-hidden-alert"],
)
def test_an_edited_partition_is_quarantined_never_believed(tmp_path, past, tonight, edited_to, honest_alerts):
    history = history_with(tmp_path, past, tonight)
    assert len(alerts_of(history)) == honest_alerts  # the truth, before anyone edits
    edited = partition_dir(history, NIGHTS[0]) / "summary.parquet"
    edit_accuracy(edited, edited_to)
    edited_bytes = edited.read_bytes()

    with pytest.raises(DataError) as refused:
        alerts_of(history)

    message = str(refused.value)
    assert f"{edited}: the history of night {NIGHTS[0]} fails its digest check" in message, message
    assert "NightlyHistory --date 2026-11-28" in message
    [moved] = [p for p in (edited.parent / QUARANTINE_DIR).iterdir() if not p.name.endswith(".reason.txt")]
    assert str(moved) in message and moved.read_bytes() == edited_bytes  # kept, not deleted
    assert not edited.exists()
    # The other nights stand; the quarantined one is a missing night until it is re-derived.
    assert [r["date"] for r in read_history(history)] == [*NIGHTS[1:], TONIGHT]


def test_a_partition_without_its_digest_or_moved_to_another_night_is_refused(tmp_path):
    history = history_with(tmp_path, 0.80, 0.80)
    stripped = partition_dir(history, NIGHTS[0]) / "summary.parquet"
    edit_accuracy(stripped, 0.80, keep_metadata=False)  # same numbers, digest gone
    with pytest.raises(DataError, match="has no digest"):
        read_history(history)

    # Night 2's honest file copied over night 3's: its digest names night 2.
    copied = partition_dir(history, NIGHTS[2]) / "summary.parquet"
    shutil.copyfile(partition_dir(history, NIGHTS[1]) / "summary.parquet", copied)
    with pytest.raises(DataError, match=f"{copied}: the history of night {NIGHTS[2]} fails its digest check"):
        read_history(history)
    assert [r["date"] for r in read_history(history)] == [NIGHTS[1], TONIGHT]


def test_an_honest_history_reads_back_exactly_what_was_written(tmp_path):
    history = history_with(tmp_path, 0.8125, 0.8)
    write_night(history, NIGHTS[1], [row(0.875)])  # a rerun night replaces its partition and its digest
    stored = read_history(history)
    assert [(r["date"], r["test_accuracy_mean"]) for r in stored] == [
        (NIGHTS[0], 0.8125),
        (NIGHTS[1], 0.875),
        (NIGHTS[2], 0.8125),
        (TONIGHT, 0.8),
    ]
    assert stored[0]["diverged_runs"] is None and stored[0]["total_runs"] == 3
