"""Import TensorFlow once in the Luigi worker process, before it forks its first training or evaluation task.

With `--workers N` (N > 1) Luigi forks a process per task, and each TrainRun and EvaluateRun used to import
TensorFlow anew: about 1.7 s of CPU per task on the 2-core machine, 50 imports in the default experiment.
Importing it once in the worker, just before the first such task is scheduled to run, lets every fork
inherit the loaded library instead.

What is inherited is a library, not a runtime: the import starts no thread and initialises no device
(tasks.training.tf1 queries devices lazily, in the process that trains) and no session exists in the
worker, so each fork still builds its own graph, session and thread pools, exactly as before. Nothing
else imports TensorFlow at scheduling time: a finished DAG (every task complete) never triggers this,
and neither does `python -m pipeline.plan`.
"""

from __future__ import annotations

import os
import sys

from tasks.training import TF_MODULE

WORKER_PID = os.getpid()  # the process that imported the DAG module: Luigi's worker (or a test's process)


def warm_up_tensorflow() -> None:
    """Import TensorFlow in the worker process; in any other process (a task's fork), do nothing."""
    if os.getpid() != WORKER_PID or TF_MODULE in sys.modules:
        return
    from pipeline.site import site_settings

    if site_settings().preload_tensorflow:
        import tasks.training.tf1  # noqa: F401 - the import itself is the point
