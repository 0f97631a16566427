"""Failpoints: test hooks that stop the process at a named, dangerous moment.

`crash_point("train.checkpoint-saved")` does nothing unless a test selected that point, in one of two ways:

- `FMNIST_CRASH_AT=train.checkpoint-saved` kills the process the first time the point is reached,
  `FMNIST_CRASH_AT=train.checkpoint-saved:3` the third time in this process. The kill is a real SIGKILL:
  no `finally`, no atexit, no flush, exactly like a power cut or the OOM killer. The harness in
  tests/test_kill_anywhere.py uses it to prove that every such moment is survivable.
- `with stop_at("train.epoch-done", 2): ...` raises `FailpointStop` the second time the point is reached
  inside the block: the in-process stand-in for a kill, for tests that must not kill pytest itself.
- `FMNIST_HOLD_AT=train.mid-epoch:2` with `FMNIST_HOLD_DIR=<folder>` holds the process at the second hit:
  it writes `<folder>/<pid>.held` and waits for a signal. A test that needs several processes stopped at
  once (every worker of a command mid-epoch) waits for their files, then kills the whole command.

Unselected (every real run), a crash point costs a dictionary check and an environment lookup.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterator

ENV_VAR = "FMNIST_CRASH_AT"
HOLD_VAR, HOLD_DIR_VAR = "FMNIST_HOLD_AT", "FMNIST_HOLD_DIR"

# The points placed in the code, for the harness and for anyone grepping; crash_point accepts any name.
CRASH_POINTS = (
    "fetch.part-written",  # a raw .gz fully copied/downloaded to <name>.part, not yet verified/promoted
    "decode.arrays-written",  # train.arrow and test.arrow written, manifest.json not yet
    "train.mid-epoch",  # a chunk of an epoch's steps ran; its metrics and checkpoint are not recorded
    "train.checkpoint-saved",  # TF's Saver wrote the epoch's files; latest.json does not point at them yet
    "train.epoch-done",  # the epoch's metrics, checkpoint and latest.json are written, old epochs pruned
    "evaluate.scored",  # the test set was scored; evaluation.json not yet written
    "history.partition-written",  # a night's history partition is in its temp file, not yet renamed onto its name
    "report.figures-written",  # the report's PNGs are written; summary.parquet, report.html, report.json not yet
    "storage.temp-written",  # an atomic write's temp file is complete; it has not replaced its target yet
)


class FailpointStop(BaseException):
    """Raised by a point armed with `stop_at`.

    A BaseException, so that no `except Exception` on its way up handles it as an ordinary error. Unlike
    a SIGKILL, `finally` blocks and context managers still run (sessions close, temp files are removed).
    """


_hits: dict[tuple[str, str], int] = {}  # (variable, point) → hits in this process
# Points armed by stop_at: name → [hits so far, the hit that raises].
_armed: dict[str, list[int]] = {}


@contextlib.contextmanager
def stop_at(name: str, occurrence: int = 1) -> Iterator[None]:
    """Within the block, the `occurrence`-th hit of `crash_point(name)` raises FailpointStop (test hook)."""
    if occurrence < 1:
        raise ValueError(f"stop_at({name!r}, {occurrence}): expected an occurrence >= 1")
    if name in _armed:
        raise ValueError(f"stop_at({name!r}): this point is already armed by an enclosing block")
    _armed[name] = [0, occurrence]
    try:
        yield
    finally:
        del _armed[name]


def crash_point(name: str) -> None:
    """Raise FailpointStop or SIGKILL this process when a test selected this point and hit (test hook)."""
    if _armed and name in _armed:
        counter = _armed[name]
        counter[0] += 1
        if counter[0] == counter[1]:
            raise FailpointStop(f"failpoint {name}: stopped at hit {counter[1]}")
    crash, hold = os.environ.get(ENV_VAR), os.environ.get(HOLD_VAR)
    if not (crash or hold):
        return
    for variable, wanted in ((ENV_VAR, crash), (HOLD_VAR, hold)):
        if wanted and _selected(variable, wanted, name):
            if variable == ENV_VAR:
                os.kill(os.getpid(), signal.SIGKILL)
            _hold()


def _selected(variable: str, wanted: str, name: str) -> bool:
    """Whether this hit of `name` is the one `variable` (<point> or <point>:<N>) selects; counts the hit."""
    point, _, occurrence = wanted.partition(":")
    if point != name:
        return False
    if occurrence and not occurrence.isdigit():
        raise ValueError(f"{variable}={wanted!r}: expected <point> or <point>:<N> with N >= 1; fix the variable")
    key = (variable, name)
    _hits[key] = _hits.get(key, 0) + 1
    return _hits[key] == (int(occurrence) if occurrence else 1)


def _hold() -> None:
    """Say so in FMNIST_HOLD_DIR, then wait for a signal (the test's SIGKILL) for as long as it takes."""
    folder = os.environ.get(HOLD_DIR_VAR)
    if not folder:
        raise ValueError(f"{HOLD_VAR} is set but {HOLD_DIR_VAR} is not: set it to a folder for the .held files")
    with open(os.path.join(folder, f"{os.getpid()}.held"), "w") as marker:
        marker.write(f"{os.getpid()}\n")
    while True:
        signal.pause()
