"""scripts/system_packages.sh on a made-up machine: a PATH of our own commands (a recording apt-get, an `id`
that says which user we are) and a sysroot for the files it looks for. Its real run, on a fresh Debian, is
scripts/fresh_debian_check.sh (docs/install.md)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tasks.data.dataset import RAW_FILE_NAMES
from tests.conftest import REPO_ROOT

SCRIPT = REPO_ROOT / "scripts" / "system_packages.sh"
COMMANDS = {"iproute2": "ip", "util-linux": "unshare", "g++": "g++", "curl": "curl", "make": "make"}
FILES = {
    "chromium": ["usr/bin/chromium"],
    "chromium-driver": ["usr/bin/chromedriver"],
    "dataset-fashion-mnist": [f"usr/share/datasets/fashion-mnist/{name}" for name in RAW_FILE_NAMES],
}
# The fake apt-get records its arguments; `install` puts each named package's command or files in place,
# unless APT_FAILS is set, when it fails as apt does.
FAKE_APT = """#!/bin/sh
echo "$*" >> "$APT_LOG"
[ "$1" = install ] || exit 0
[ -z "$APT_FAILS" ] || { echo "E: Unable to locate package $APT_FAILS"; exit 100; }
for package in "$@"; do
  case $package in -*) continue ;; esac
  for path in $(grep "^$package " "$APT_PROVIDES" | cut -d' ' -f2-); do
    mkdir -p "$(dirname "$path")" && printf '#!/bin/sh\\n' > "$path" && chmod +x "$path"
  done
done
"""


class Machine:
    def __init__(self, tmp_path: Path):
        self.bin, self.sysroot, self.log = tmp_path / "bin", tmp_path / "sysroot", tmp_path / "apt.log"
        self.bin.mkdir()
        provides = []
        for package, command in COMMANDS.items():
            provides.append(f"{package} {self.bin / command}")
        for package, paths in FILES.items():
            provides.append(f"{package} " + " ".join(str(self.sysroot / path) for path in paths))
        self.provides = tmp_path / "provides"
        self.provides.write_text("\n".join(provides) + "\n")
        for tool in ("mktemp", "tail", "rm", "grep", "cut", "dirname", "mkdir", "chmod"):
            (self.bin / tool).symlink_to(shutil.which(tool))
        self._script("id", 'echo "$FAKE_UID"')
        self._script("apt-get", FAKE_APT.split("\n", 1)[1])
        for package in [*COMMANDS, *FILES]:
            self.install(package)
        self.env = {
            "PATH": str(self.bin),
            "PYTHON": sys.executable,  # a Python with ensurepip, and no venv yet: python3-venv counts as here
            "VENV": str(tmp_path / "no-venv"),
            "SYSTEM_PACKAGES_SYSROOT": str(self.sysroot),
            "APT_LOG": str(self.log),
            "APT_PROVIDES": str(self.provides),
            "FAKE_UID": "0",
            "TMPDIR": str(tmp_path),
        }

    def _script(self, name: str, body: str) -> None:
        (self.bin / name).write_text(f"#!/bin/sh\n{body}\n")
        (self.bin / name).chmod(0o755)

    def install(self, package: str) -> None:
        if package in COMMANDS:
            self._script(COMMANDS[package], "")
        for path in FILES.get(package, []):
            (self.sysroot / path).parent.mkdir(parents=True, exist_ok=True)
            (self.sysroot / path).write_text("")
            (self.sysroot / path).chmod(0o755)

    def remove(self, *packages: str) -> None:
        for package in packages:
            if package in COMMANDS:
                (self.bin / COMMANDS[package]).unlink()
            for path in FILES.get(package, []):
                (self.sysroot / path).unlink()

    def run(self, target: str, **env: str) -> subprocess.CompletedProcess:
        bash = shutil.which("bash")
        return subprocess.run(
            [bash, str(SCRIPT), target], env={**self.env, **env}, capture_output=True, text=True, timeout=60
        )

    def apt_calls(self) -> list[str]:
        return self.log.read_text().splitlines() if self.log.exists() else []


@pytest.fixture
def machine(tmp_path):
    return Machine(tmp_path)


@pytest.mark.parametrize("target", ["install", "report", "luigid", "test"])
def test_nothing_missing_is_silent_and_runs_no_apt_get(machine, target):
    done = machine.run(target)
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")
    assert machine.apt_calls() == []


def test_as_root_one_quiet_update_and_install_of_exactly_what_is_missing(machine):
    machine.remove("chromium-driver", "curl", "dataset-fashion-mnist")
    done = machine.run("test")
    assert done.returncode == 0, done.stdout + done.stderr
    assert machine.apt_calls() == [
        "update -qq",
        "install -y -qq --no-install-recommends dataset-fashion-mnist chromium-driver curl",
    ]
    lines = done.stdout.splitlines()
    assert len(lines) == 2 and lines[0].startswith("make test: installing the Debian packages dataset-fashion-mnist")
    assert lines[1].startswith("make test: installed dataset-fashion-mnist chromium-driver curl in ")
    assert done.stderr == ""
    again = machine.run("test")  # idempotent: now nothing is missing, so no apt-get at all
    assert (again.returncode, again.stdout, again.stderr) == (0, "", "")
    assert len(machine.apt_calls()) == 2


def test_not_root_stops_at_once_with_one_message_naming_the_packages(machine):
    machine.remove("chromium", "iproute2")
    done = machine.run("test", FAKE_UID="1000")
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.count("\n") == 1, done.stderr
    assert done.stderr.startswith("error: make test needs the Debian packages chromium iproute2, which are missing")
    assert "this is uid 1000, not root" in done.stderr
    assert "apt-get install --no-install-recommends chromium iproute2" in done.stderr
    assert machine.apt_calls() == []


def test_without_apt_get_it_stops_even_as_root(machine):
    (machine.bin / "apt-get").unlink()
    machine.remove("g++")
    done = machine.run("test")
    assert done.returncode == 1
    assert "needs the Debian packages g++, which are missing, and this machine has no apt-get" in done.stderr
    assert "equivalents" in done.stderr


def test_a_failed_apt_get_shows_its_log_and_stops(machine):
    machine.remove("chromium")
    done = machine.run("test", APT_FAILS="chromium")
    assert done.returncode == 1
    assert "E: Unable to locate package chromium" in done.stderr
    assert "error: apt-get could not install chromium" in done.stderr


def test_make_report_only_notes_a_missing_dataset_when_it_cannot_install_it(machine):
    machine.remove("dataset-fashion-mnist", "chromium")  # chromium: not report's business
    done = machine.run("report", FAKE_UID="1000")
    assert done.returncode == 0 and done.stdout == ""
    assert done.stderr.startswith("note: dataset-fashion-mnist spares the download from the upstream URL")
    assert done.stderr.count("\n") == 1


def test_python3_venv_counts_as_missing_with_python3_on_a_bare_debian(machine):
    done = machine.run("install", PYTHON=str(machine.bin / "python3"), FAKE_UID="1000")
    assert done.returncode == 1
    assert "needs the Debian packages python3 python3-venv, which are missing" in done.stderr


@pytest.mark.parametrize("goal", ["test", "report", "install"])
def test_make_checks_the_packages_before_anything_else(goal, tmp_path):
    """`make -n` lists the recipes in order: the package check of that goal comes first."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("MAKE")}
    planned = subprocess.run(
        ["make", "-n", "-B", goal], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert planned.returncode == 0, planned.stderr
    first = planned.stdout.splitlines()[0]
    assert first.endswith(f"bash scripts/system_packages.sh {goal}"), planned.stdout
