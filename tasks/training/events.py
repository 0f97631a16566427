"""TensorBoard event files of one run, rebuilt whole from metrics.parquet (and evaluation.json) at each write.

`tensorboard --logdir artifacts/runs` finds one event file per run folder, `events.out.tfevents.fmnist-pipeline`
(docs/tensorboard.md). It is a pure function of what the folder already records, never of the training graph:
`tf.compat.v1.summary.Event` / `Summary` protos built in Python and framed by `tf.io.TFRecordWriter`, so no op
joins the graph and no weight can change. Per epoch (step = epoch number): train and validation loss and
accuracy, the learning rate, examples/s and the epoch's seconds; at step 0 a text table of the run's settings,
run hash and seed; once evaluated, the test accuracy and loss at the last epoch's step.

Kill and resume: the file is rewritten at each epoch end and when an attempt starts (after the resume has cut
metrics.parquet back to its last checkpoint), so after the start of every attempt it holds exactly the rows
of metrics.parquet, each step once, in order. A kill can only leave it one epoch behind, never ahead.
Evaluation rewrites it with the test numbers just before it writes evaluation.json. It is derived data:
"finished" never asks for it, and `python -m tasks.training.events artifacts/runs` builds it for older runs.
The write goes to `events.pending` (atomically, see tasks.core.storage) and is then renamed onto the event file:
a temp file beside the event file would have "tfevents" in its name, and TensorBoard reads every such file.
Event wall times are the first write's time plus the epochs' own seconds, so a rewrite repeats the bytes of
every record it keeps: a TensorBoard that follows the file (`--detect_file_replacement=true`) only sees records
appended.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from tasks.core.errors import RunFolderError
from tasks.core.runfolder import RunFolder
from tasks.core.storage import QUARANTINE_DIR, atomic_path, storage_error

log = logging.getLogger(__name__)

# Written whole here first, then renamed onto EVENTS_FILE: no "tfevents" in the name (TensorBoard's pattern).
PENDING_FILE = "events.pending"
# metrics.parquet column → scalar tag; tags are grouped in TensorBoard by what precedes the slash.
SCALAR_TAGS = {
    "train_loss": "loss/train",
    "val_loss": "loss/validation",
    "train_accuracy": "accuracy/train",
    "val_accuracy": "accuracy/validation",
    "examples_per_second": "speed/examples_per_second",
    "wall_seconds": "speed/epoch_seconds",
}
LEARNING_RATE_TAG = "optimizer/learning_rate"
SETTINGS_TAG = "run/settings"
# evaluation.json's `test` key → scalar tag, written at the last epoch's step.
TEST_TAGS = {"accuracy": "test/accuracy", "loss": "test/loss"}
FILE_VERSION = "brain.Event:2"


def event_records(
    settings: Mapping[str, Any],
    run_hash: str,
    seed: int,
    rows: Sequence[Mapping[str, Any]],
    test: Mapping[str, Any] | None,
    base_wall_time: float,
) -> list[bytes]:
    """The serialized Event protos of a run's event file, in file order (a pure function of its arguments)."""
    from tasks.training.tf1 import tf  # only writers of the file load TensorBoard's protos

    def event(step: int, wall_time: float, summary=None, **fields) -> bytes:
        proto = tf.summary.Event(step=step, wall_time=wall_time, **fields)
        if summary is not None:
            proto.summary.CopyFrom(summary)
        return proto.SerializeToString()

    def scalars(values: Mapping[str, float]):
        return tf.summary.Summary(
            value=[tf.summary.Summary.Value(tag=tag, simple_value=float(value)) for tag, value in values.items()]
        )

    text = tf.summary.Summary()
    value = text.value.add(tag=SETTINGS_TAG)
    value.metadata.plugin_data.plugin_name = "text"
    value.tensor.CopyFrom(tf.make_tensor_proto(settings_markdown(settings, run_hash, seed)))
    records = [event(0, base_wall_time, file_version=FILE_VERSION), event(0, base_wall_time, text)]
    wall_time, last_epoch = base_wall_time, 0
    for row in sorted(rows, key=lambda row: row["epoch"]):
        wall_time += float(row["wall_seconds"])
        last_epoch = int(row["epoch"])
        values = {tag: row[column] for column, tag in SCALAR_TAGS.items()}
        values[LEARNING_RATE_TAG] = settings["optimizer"]["learning_rate"]  # constant for the whole run
        records.append(event(last_epoch, wall_time, scalars(values)))
    if test is not None:
        numbers = {tag: test[key] for key, tag in TEST_TAGS.items() if test.get(key) is not None}
        records.append(event(last_epoch, wall_time, scalars(numbers)))
    return records


def settings_markdown(settings: Mapping[str, Any], run_hash: str, seed: int) -> str:
    """The run's settings as a Markdown table (TensorBoard's text plugin renders it): run hash, seed, then
    every setting by its dotted path."""
    lines = ["| setting | value |", "|---|---|", f"| run_hash | `{run_hash}` |", f"| seed | {seed} |"]
    lines += [f"| {key} | `{json.dumps(value)}` |" for key, value in _flat(settings)]
    return "\n".join(lines)


def _flat(data: Mapping[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    items: list[tuple[str, Any]] = []
    for key in sorted(data):
        value = data[key]
        if isinstance(value, Mapping) and value:
            items += _flat(value, f"{prefix}{key}.")
        else:
            items.append((f"{prefix}{key}", value))
    return items


# sync_events' default for `test`: the numbers of evaluation.json, while it stands.
RECORDED = object()


def sync_events(folder: RunFolder, settings: Mapping[str, Any] | None = None, test: Any = RECORDED) -> bool:
    """Make the run's event file equal what the folder records; True when it was (re)written.

    `settings` are the run's plain settings (RunSettings.as_dict()); None reads them from run.json. `test` is
    evaluation.json's `test` (None: not evaluated); by default it is read from evaluation.json while that stands
    (RunFolder.evaluation). metrics.parquet that is missing counts as no epoch yet.
    """
    if settings is None:
        settings = folder.record().data["settings"]
    rows = folder.metric_rows() if folder.metrics_path.exists() else []
    if test is RECORDED:
        try:
            test = folder.evaluation().test
        except RunFolderError:
            test = None
    path = folder.events_path
    kept = read_records(path)
    base = _base_wall_time(kept, rows)
    records = event_records(settings, folder.run_hash, folder.seed, rows, test, base)
    if records == kept:
        return False
    _write(path, records)
    return True


def read_records(path: Path) -> list[bytes] | None:
    """The serialized records of an event file; None when it is missing or not a whole TFRecord file."""
    from tasks.training.tf1 import tf

    if not path.is_file():
        return None
    try:
        return list(tf.io.tf_record_iterator(str(path)))
    except (tf.errors.OpError, OSError):
        return None


def _base_wall_time(records: list[bytes] | None, rows: Sequence[Mapping[str, Any]]) -> float:
    """The first record's wall time of the file already there (so its records keep their bytes); else now,
    less the seconds of the epochs already recorded."""
    from tasks.training.tf1 import tf

    if records:
        try:
            first = tf.summary.Event.FromString(records[0])
        except Exception:  # noqa: BLE001 - protobuf's DecodeError: not an event file of ours, start afresh
            first = None
        if first is not None and first.file_version == FILE_VERSION:
            return first.wall_time
    return time.time() - sum(float(row["wall_seconds"]) for row in rows)


def _write(path: Path, records: list[bytes]) -> None:
    """Write the file whole, then rename it into place. Not flushed to disk (no fsync): it is derived data, so a
    power cut that leaves an older or torn version costs nothing that the next attempt's rewrite (or
    `python -m tasks.training.events`) does not rebuild, and an epoch pays no disk wait for it."""
    from tasks.training.tf1 import tf

    pending = path.with_name(PENDING_FILE)
    with atomic_path(pending, durable=False) as temp:
        with tf.io.TFRecordWriter(str(temp)) as writer:
            for record in records:
                writer.write(record)
    try:
        os.replace(pending, path)  # one folder: atomic; `pending` is whole (atomic_path renamed it there complete)
    except OSError as exc:
        raise storage_error(path, exc) from None


def sync_runs(runs_dir: Path) -> dict[str, list[Path]]:
    """Rebuild the event file of every finished run under `runs_dir` that lacks it or whose file is stale
    (runs trained before event files existed): nothing is trained. Returns the run folders by outcome."""
    outcome: dict[str, list[Path]] = {"written": [], "current": [], "skipped": []}
    for run_json in sorted(Path(runs_dir).rglob("run.json")):
        if QUARANTINE_DIR in run_json.parts:
            continue
        try:
            folder = RunFolder.found_at(run_json.parent)
            folder.record()
        except RunFolderError as exc:
            log.warning("%s: not a finished run (%s); no event file written", run_json.parent, exc)
            outcome["skipped"].append(run_json.parent)
            continue
        outcome["written" if sync_events(folder) else "current"].append(folder.path)
    return outcome


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m tasks.training.events artifacts/runs`: write the missing or stale event files of finished runs."""
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1:
        print("usage: python -m tasks.training.events <runs folder, e.g. artifacts/runs>", file=sys.stderr)
        return 2
    outcome = sync_runs(Path(args[0]))
    print(
        f"{len(outcome['written'])} event files written, {len(outcome['current'])} already current, "
        f"{len(outcome['skipped'])} folders skipped (not finished runs)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
