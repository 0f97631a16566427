"""Progress of one training run on the console: one live line per running run on a terminal, one line
per epoch in a log file.

Several runs train at once in separate worker processes that share one terminal. Each live line takes
the lowest free "slot" (a non-blocking lock on a small file per slot, held while the run trains), so
concurrent runs draw on separate lines instead of over each other.
"""

from __future__ import annotations

import fcntl
import os
import sys
import tempfile
from pathlib import Path
from typing import IO

MAX_SLOTS = 32


def _claim_slot(directory: Path) -> tuple[int, int | None]:
    """(slot, fd holding its lock); slot 0 without a lock when every slot is taken or locking fails."""
    try:
        directory.mkdir(mode=0o700, exist_ok=True)
        for slot in range(MAX_SLOTS):
            fd = os.open(directory / f"slot-{slot}.lock", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return slot, fd
            except OSError:
                os.close(fd)
    except OSError:
        pass  # a progress line is a convenience: never fail a run over it
    return 0, None


def slot_directory() -> Path:
    return Path(tempfile.gettempdir()) / f"fmnist-pipeline-progress-{os.getuid()}"


class RunProgress:
    """`advance(steps)` as steps run, `epoch(message)` after each epoch, `close()` at the end."""

    def __init__(self, label: str, total_steps: int, done_steps: int, stream: IO[str] | None = None):
        self.label = label
        self.stream = stream or sys.stderr
        self.live = self.stream.isatty()
        self._slot_fd = None
        self._bar = None
        if self.live:
            from tqdm import tqdm

            slot, self._slot_fd = _claim_slot(slot_directory())
            self._bar = tqdm(
                total=total_steps,
                initial=done_steps,
                desc=label,
                unit="step",
                file=self.stream,
                position=slot,
                leave=False,
                dynamic_ncols=True,
            )

    def __enter__(self) -> RunProgress:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def advance(self, steps: int) -> None:
        if self._bar is not None:
            self._bar.update(steps)

    def epoch(self, message: str) -> None:
        if self._bar is not None:
            self._bar.set_postfix_str(message, refresh=True)
        else:
            print(f"{self.label}: {message}", file=self.stream, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        if self._slot_fd is not None:
            os.close(self._slot_fd)  # closing releases the slot's lock
            self._slot_fd = None
