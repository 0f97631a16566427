"""`make test` runs pytest with --no-skips: a skipped test there is a failure, never a quiet pass."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import REPO_ROOT


def test_a_skip_fails_under_no_skips(tmp_path):
    (tmp_path / "test_skips.py").write_text(
        "import pytest\n\ndef test_skipped():\n    pytest.skip('the dataset is missing')\n\ndef test_ok():\n    pass\n"
    )
    command = [sys.executable, "-m", "pytest", "-q", "-p", "tests.conftest", "-p", "no:cacheprovider", str(tmp_path)]
    relaxed = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    strict = subprocess.run([*command, "--no-skips"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert relaxed.returncode == 0 and "1 passed, 1 skipped" in relaxed.stdout
    assert strict.returncode == 1 and "1 failed, 1 passed" in strict.stdout
    assert "the dataset is missing" in strict.stdout
