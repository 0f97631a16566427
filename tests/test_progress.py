"""The console progress of training runs: live lines on a terminal (one per run), epoch lines in a log."""

from __future__ import annotations

import fcntl
import io
import os
import pty
import select
import struct
import termios

from tasks.training.progress import RunProgress


def test_a_log_file_gets_one_line_per_epoch():
    log = io.StringIO()
    progress = RunProgress("mlp-adam-351b8dc998/seed-1", total_steps=40, done_steps=0, stream=log)
    for epoch in (1, 2):
        progress.advance(20)
        progress.epoch(f"epoch {epoch}/2 · val_acc 0.8{epoch}0")
    progress.close()
    assert log.getvalue().splitlines() == [
        "mlp-adam-351b8dc998/seed-1: epoch 1/2 · val_acc 0.810",
        "mlp-adam-351b8dc998/seed-1: epoch 2/2 · val_acc 0.820",
    ]


def _terminal():
    leader, follower = pty.openpty()
    # A new pseudo-terminal is 0 columns wide: give it a size, as a real terminal window has.
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 120, 0, 0))
    return leader, os.fdopen(follower, "w", encoding="utf-8")


def test_concurrent_runs_on_a_terminal_draw_on_separate_lines(tmp_path, monkeypatch):
    monkeypatch.setattr("tasks.training.progress.slot_directory", lambda: tmp_path / "slots")
    leader, terminal = _terminal()
    first = RunProgress("run-a", total_steps=10, done_steps=0, stream=terminal)
    second = RunProgress("run-b", total_steps=10, done_steps=5, stream=terminal)
    assert (abs(first._bar.pos), abs(second._bar.pos)) == (0, 1)
    first.advance(3)
    second.epoch("epoch 1/2 · val_acc 0.700")
    second.close()
    third = RunProgress("run-c", total_steps=10, done_steps=0, stream=terminal)
    assert abs(third._bar.pos) == 1, "a finished run's line is free again"
    third.close()
    first.close()
    terminal.flush()
    chunks = []
    while select.select([leader], [], [], 0.2)[0]:
        chunks.append(os.read(leader, 65536))
    shown = b"".join(chunks).decode("utf-8", "replace")
    assert "run-a" in shown and "run-b" in shown and "val_acc 0.700" in shown
    assert not shown.count("\n") > 10, "a live line redraws in place instead of printing line after line"
    os.close(leader)  # first: a terminal with unread output makes closing its other end wait
    terminal.close()
