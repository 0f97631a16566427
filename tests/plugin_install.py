"""Installed optimizer plugins for tests: the example package installed for real by pip, and variants of it.

`install_example` runs `pip install --no-deps --no-build-isolation --no-index --target <dir>` on
examples/lion-optimizer (offline: setuptools comes from this venv). `variant` copies that installed tree and
edits the installed source, which is what editing an installed plugin means. `use` puts one tree on
sys.path and forgets what the registry and the import system remembered of the previous one.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from tasks.core import plugins
from tests.conftest import REPO_ROOT

EXAMPLE = REPO_ROOT / "examples" / "lion-optimizer"
PACKAGE = "lion_optimizer"


def install_example(target: Path) -> Path:
    """The example plugin pip-installed into `target` (its own site folder); the folder."""
    build = target.parent / f"{target.name}-source"
    shutil.copytree(EXAMPLE, build, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__", "tests"))
    command = [sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-index", "-q"]
    done = subprocess.run(
        [*command, "--target", str(target), str(build)], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert (target / PACKAGE / "__init__.py").is_file() and list(target.glob("lion_optimizer-*.dist-info"))
    return target


def variant(installed: Path, target: Path, old: str, new: str, module: str = "__init__.py") -> Path:
    """A copy of the installed tree whose plugin source `module` has `old` replaced by `new` (it must occur)."""
    shutil.copytree(installed, target)
    source = target / PACKAGE / module
    text = source.read_text()
    assert old in text, old
    source.write_text(text.replace(old, new, 1))
    return target


def purge_plugin_modules() -> None:
    for module in [name for name in sys.modules if name == PACKAGE or name.startswith(PACKAGE + ".")]:
        del sys.modules[module]


class PluginPath:
    """Which installed tree is on sys.path; `use(None)` removes it."""

    def __init__(self, monkeypatch):
        self.monkeypatch = monkeypatch
        self.current: str | None = None

    def use(self, site: Path | None) -> None:
        if self.current is not None:
            sys.path.remove(self.current)
        self.current = None
        if site is not None:
            self.current = str(site)
            sys.path.insert(0, self.current)
        import importlib

        importlib.invalidate_caches()
        purge_plugin_modules()
        plugins.forget()

    def close(self) -> None:
        self.use(None)


def write_distribution(site: Path, distribution: str, entry_points: dict[str, str], modules: dict[str, str]) -> Path:
    """A minimal installed distribution (a dist-info folder with METADATA and entry_points.txt) and its modules."""
    site.mkdir(parents=True, exist_ok=True)
    info = site / f"{distribution.replace('-', '_')}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {distribution}\nVersion: 1.0\n")
    lines = "".join(f"{name} = {value}\n" for name, value in entry_points.items())
    (info / "entry_points.txt").write_text(f"[{plugins.GROUP}]\n{lines}")
    for relative, text in modules.items():
        path = site / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return site
