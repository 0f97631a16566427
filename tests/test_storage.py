"""Atomic targets get the ordinary file mode, not the private mode (0600) of a temp file."""

from __future__ import annotations

import os
import stat

from tasks.core.storage import write_json_atomic
from tasks.data.arrays import write_indices


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


def test_finished_targets_have_the_mode_the_umask_gives(tmp_path):
    expected = 0o666 & ~_umask()  # 0644 under the usual umask 022; mkstemp alone would give 0600
    write_json_atomic(tmp_path / "a.json", {"x": 1})
    write_indices(tmp_path / "b.arrow", [1, 2])
    for name in ("a.json", "b.arrow"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == expected, name
