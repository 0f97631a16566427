"""pipeline/warm.py: the Luigi worker imports TensorFlow once, and only the worker, and only when asked."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent

PROBE = textwrap.dedent(
    """
    import os, sys
    from pipeline.warm import TF_MODULE, warm_up_tensorflow

    pid = os.fork()
    if pid == 0:  # a task's fork: never imports
        warm_up_tensorflow()
        os._exit(3 if TF_MODULE in sys.modules else 0)
    _, status = os.waitpid(pid, 0)
    print("fork imported:", os.waitstatus_to_exitcode(status) == 3)
    print("before:", TF_MODULE in sys.modules)
    warm_up_tensorflow()
    print("worker imported:", TF_MODULE in sys.modules)
    if TF_MODULE in sys.modules:  # a library, not a runtime: no device was initialised (no cuInit before a fork)
        from tensorflow.python.eager import context
        print("devices initialised:", context.context()._physical_devices is not None)
    """
)


def _probe(tmp_path: Path, preload: str) -> str:
    cfg = tmp_path / f"preload-{preload}.cfg"
    cfg.write_text(f"[pipeline]\npreload_tensorflow = {preload}\n")
    env = dict(os.environ, LUIGI_CONFIG_PATH=str(cfg), TF_CPP_MIN_LOG_LEVEL="2")
    result = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def test_the_worker_imports_tensorflow_once_and_a_fork_never_does(tmp_path):
    output = _probe(tmp_path, "true")
    assert "fork imported: False" in output
    assert "before: False" in output  # importing the DAG module alone does not load TensorFlow
    assert "worker imported: True" in output
    assert "devices initialised: False" in output


def test_preloading_can_be_turned_off(tmp_path):
    output = _probe(tmp_path, "false")
    assert "worker imported: False" in output
