"""Before any task runs: sweep the temp files that killed writers left in its output folder.

A writer killed between creating its temp file and the atomic rename leaves `.<name>.tmp-…` behind.
The file is never taken for a target (targets have plain names), but it wastes space, so the next task
that writes into that folder removes it (tasks.core.storage.sweep_temp_files decides what is safe to remove).
"""

from __future__ import annotations

from pathlib import Path

import luigi
from luigi.task import flatten

from tasks.core.storage import sweep_temp_files


@luigi.Task.event_handler(luigi.Event.START)
def sweep_output_folders(task: luigi.Task) -> None:
    """Luigi START handler: sweep each local output's folder (recursively) of dead writers' temp files."""
    folders = {Path(target.path).parent for target in flatten(task.output()) if isinstance(target, luigi.LocalTarget)}
    for folder in folders:
        sweep_temp_files(folder)
