"""One run trained by `train_run` in a child process of its own.

A child has a TensorFlow of its own, so it trains at the thread counts it is given (TensorFlow keeps a
process's first session's thread pools and ignores later sessions' counts), and a failpoint's SIGKILL
takes only the child. The callers read the run's run.json from `run_dir`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tasks.core import faults
from tests.conftest import REPO_ROOT

CHILD = """
import json, sys
from pathlib import Path
import tasks.training.graph as graph

job = json.loads(sys.argv[1])
if job["chunk_steps"]:
    graph.CHUNK_STEPS = job["chunk_steps"]
from tasks.training.loop import train_run
train_run(
    job["settings"],
    job["seed"],
    Path(job["train_arrow"]),
    Path(job["split_arrow"]),
    Path(job["run_dir"]),
    intra_op_threads=job["threads"][0],
    inter_op_threads=job["threads"][1],
)
"""


def train_in_child(
    settings: dict,
    train_arrow: Path,
    split_arrow: Path,
    run_dir: Path,
    *,
    seed: int = 0,
    threads: tuple[int, int] = (2, 1),
    crash_at: str | None = None,
    chunk_steps: int | None = None,
    timeout: float = 300,
) -> subprocess.CompletedProcess:
    """Train `settings` at `seed` into `run_dir`; `crash_at` sets the failpoint, `chunk_steps` graph.CHUNK_STEPS."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    env.pop(faults.ENV_VAR, None)
    if crash_at:
        env[faults.ENV_VAR] = crash_at
    job = {
        "settings": settings,
        "seed": seed,
        "train_arrow": str(train_arrow),
        "split_arrow": str(split_arrow),
        "run_dir": str(run_dir),
        "threads": list(threads),
        "chunk_steps": chunk_steps,
    }
    return subprocess.run(
        [sys.executable, "-c", CHILD, json.dumps(job)],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
