"""Failpoints: a test hook that kills the process at a named, dangerous moment.

`crash_point("train.checkpoint-saved")` does nothing unless the environment variable `FMNIST_CRASH_AT`
names that point: `FMNIST_CRASH_AT=train.checkpoint-saved` kills the process at the first time it is
reached, `FMNIST_CRASH_AT=train.checkpoint-saved:3` at the third time in this process. The kill is a
real SIGKILL: no `finally`, no atexit, no flush, exactly like a power cut or the OOM killer. The
harness in tests/test_kill_anywhere.py uses it to prove that every such moment is survivable.

Unset (every real run), a crash point costs one dictionary lookup.
"""

from __future__ import annotations

import os
import signal

ENV_VAR = "FMNIST_CRASH_AT"

# The points placed in the code, for the harness and for anyone grepping; crash_point accepts any name.
CRASH_POINTS = (
    "fetch.part-written",  # a raw .gz fully copied/downloaded to <name>.part, not yet verified/promoted
    "decode.arrays-written",  # train.arrow and test.arrow written, manifest.json not yet
    "train.mid-epoch",  # a chunk of an epoch's steps ran; its metrics and checkpoint are not recorded
    "train.checkpoint-saved",  # TF's Saver wrote the epoch's files; latest.json does not point at them yet
    "evaluate.scored",  # the test set was scored; evaluation.json not yet written
    "report.figures-written",  # the report's PNGs are written; summary.parquet, report.html, report.json not yet
    "storage.temp-written",  # an atomic write's temp file is complete; it has not replaced its target yet
)

_hits: dict[str, int] = {}


def crash_point(name: str) -> None:
    """Kill this process with SIGKILL when FMNIST_CRASH_AT selects this point and hit (test hook)."""
    wanted = os.environ.get(ENV_VAR)
    if not wanted:
        return
    point, _, occurrence = wanted.partition(":")
    if point != name:
        return
    if occurrence and not occurrence.isdigit():
        raise ValueError(f"{ENV_VAR}={wanted!r}: expected <point> or <point>:<N> with N >= 1; fix the variable")
    _hits[name] = _hits.get(name, 0) + 1
    if _hits[name] == (int(occurrence) if occurrence else 1):
        os.kill(os.getpid(), signal.SIGKILL)
