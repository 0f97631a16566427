"""Calling code on a FIFO without hanging the suite when that code blocks opening it."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import pytest

T = TypeVar("T")


def call_without_blocking(fifo: Path, call: Callable[[], T], *, seconds: float = 10.0) -> T:
    """`call()`'s result; a test failure when it is still blocked after `seconds` (it waited on the FIFO's
    writer). A blocked call is then given a writer, so that its thread ends."""
    results: list[T] = []
    worker = threading.Thread(target=lambda: results.append(call()))
    worker.start()
    worker.join(seconds)
    if worker.is_alive():
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        worker.join(seconds)
        pytest.fail(f"blocked opening the FIFO {fifo}")
    return results[0]
