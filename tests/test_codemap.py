"""docs/code-map.md is generated from the module docstrings, and kept current."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import REPO_ROOT


def test_the_code_map_is_current_and_lists_every_module():
    done = subprocess.run(
        [sys.executable, "scripts/codemap.py", "--check"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    text = (REPO_ROOT / "docs" / "code-map.md").read_text(encoding="utf-8")
    modules = sorted(
        p.relative_to(REPO_ROOT).as_posix() for d in ("pipeline", "tasks") for p in (REPO_ROOT / d).rglob("*.py")
    )
    assert [line.split("`")[1] for line in text.splitlines() if line.startswith("| `")] == modules


def test_the_check_fails_when_a_docstring_changes(tmp_path):
    sys.path.insert(0, str(REPO_ROOT / "scripts"))
    try:
        import codemap
    finally:
        sys.path.pop(0)
    assert codemap.main(["--check"]) == 0
    original = codemap.TARGET
    codemap.TARGET = tmp_path / "code-map.md"
    try:
        codemap.TARGET.write_text(original.read_text(encoding="utf-8").replace("Luigi", "luigi", 1))
        assert codemap.main(["--check"]) == 1
    finally:
        codemap.TARGET = original
