"""Before any task runs: sweep the temp files that killed writers left in its output folder.

A writer killed between creating its temp file and the atomic rename leaves `.<name>.tmp-…` behind.
The file is never taken for a target (targets have plain names), but it wastes space, so the next task
that writes into that folder removes it (tasks.core.storage.sweep_temp_files decides what is safe to remove).
A folder that is, or lies under, a symbolic link inside the artifacts root is not swept: the sweep refuses
it, this handler says so, and the task's own writes then fail with the same refusal.
"""

from __future__ import annotations

import logging
from pathlib import Path

import luigi
from luigi.task import flatten

from tasks.core.errors import StorageError
from tasks.core.storage import sweep_temp_files

log = logging.getLogger(__name__)


@luigi.Task.event_handler(luigi.Event.START)
def sweep_output_folders(task: luigi.Task) -> None:
    """Luigi START handler: sweep each local output's folder (recursively) of dead writers' temp files."""
    folders = {Path(target.path).parent for target in flatten(task.output()) if isinstance(target, luigi.LocalTarget)}
    for folder in folders:
        if not folder.is_dir():
            continue  # nothing to sweep yet (and a missing folder below a link is refused where it is made)
        try:
            sweep_temp_files(folder)
        except StorageError as refused:
            log.warning("%s: not swept: %s", task, refused)
