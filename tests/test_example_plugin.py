"""The worked plugin in examples/lion-optimizer runs its own test suite, as its author would, inside ours."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.conftest import REPO_ROOT

EXAMPLE = REPO_ROOT / "examples" / "lion-optimizer"


def test_the_example_plugins_own_tests_pass():
    env = dict(os.environ, PYTHONPATH=str(EXAMPLE / "src"), TF_CPP_MIN_LOG_LEVEL="2")
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(EXAMPLE / "tests")],
        cwd=EXAMPLE,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert " passed" in done.stdout and "skipped" not in done.stdout, done.stdout[-1000:]
