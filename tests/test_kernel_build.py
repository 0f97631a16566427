"""The fused M-SVAG/SVAG kernel's library (tasks/training/kernels): built from the current source with the
right flags, loaded lazily in the process that builds a graph, and refused with a warning when broken or stale.

`make test` builds the library first (`make kernels`, which `install` runs), so a missing or stale library
fails here rather than letting every other test silently exercise the pure-TF path only. Its results
against the pure-TF path: tests/test_msvag_kernel.py.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from tasks.core import faults
from tasks.core.storage import TEMP_MARKER, WRITER_ID, sha256_file
from tasks.training import kernels
from tasks.training.kernels import build as kernel_build
from tasks.training.tf1 import tf

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _kernel_not_forced_off(monkeypatch):
    """Every test here starts with the kernel allowed, whatever the environment says."""
    monkeypatch.delenv(kernels.PURE_TF_ENV, raising=False)


def test_the_kernel_is_built_from_the_current_source_and_loads():
    path = kernels.library_path(tf.__version__)
    assert path.is_file(), f"{path} is missing: run `make kernels` (make install and make test do)"
    assert (kernels.read_stamp(path) or {}).get("source_sha256") == kernels.source_sha256(), (
        f"{path} was built from another variance_adapted_step.cc: run `make kernels`"
    )
    assert kernels.variance_adapted_step_op() is not None
    assert kernels.loaded_libraries()[path] is True


def test_the_library_is_built_with_no_fma_contraction_and_tensorflows_flags():
    command = kernel_build.compile_command("g++", Path("k.cc"), Path("k.so"), ["-Iinc", "-DX=1"], ["-Llib", "-lfw"])
    assert command[:1] == ["g++"] and {"-std=c++17", "-shared", "-fPIC", "-O2", "-ffp-contract=off"} <= set(command)
    assert not {"-ffast-math", "-Ofast", "-O3", "-march=native", "-mfma"} & set(command)
    assert command.index("-Iinc") < command.index("k.cc") < command.index("-Llib")  # link flags after the source
    assert command[command.index("-o") + 1] == "k.so"


def test_a_broken_or_stale_library_falls_back_with_a_warning(tmp_path, caplog):
    broken = tmp_path / "broken" / kernels.LIBRARY_NAME
    broken.parent.mkdir()
    broken.write_bytes(b"\x7fELF but not really a shared object")
    # Its stamp vouches for these very bytes, so it is dlopen that refuses them.
    stamp = {"source_sha256": kernels.source_sha256(), "library_sha256": sha256_file(broken)}
    kernels.stamp_path(broken).write_text(json.dumps(stamp))
    stale = tmp_path / "stale" / kernels.LIBRARY_NAME
    stale.parent.mkdir()
    stale.write_bytes(kernels.library_path(tf.__version__).read_bytes())
    kernels.stamp_path(stale).write_text('{"source_sha256": "an older variance_adapted_step.cc"}')
    with caplog.at_level(logging.WARNING, logger=kernels.__name__):
        assert kernels.load_library(broken) is None
        assert kernels.load_library(stale) is None
        assert kernels.load_library(broken) is None  # cached: not tried, nor warned about, twice
    messages = [record.getMessage() for record in caplog.records]
    assert len(messages) == 2, messages
    assert str(broken) in messages[0] and "failed to load" in messages[0] and "make kernels" in messages[0]
    assert str(stale) in messages[1] and "not built from the current" in messages[1]


def test_importing_the_optimizers_loads_no_library_building_a_graph_does():
    """The Luigi worker imports TF and the task modules before it forks (pipeline/warm.py): no library then."""
    code = """
from tensorflow.python.framework import op_def_registry
from tasks.training import kernels
import pipeline, pipeline.warm, tasks.training.tf1, tasks.training.msvag
from tasks.core.runs import OptimizerSettings
from tasks.training.optimizers import make_optimizer
from tasks.training.tf1 import tf
optimizer = make_optimizer(OptimizerSettings(name="msvag", learning_rate=0.1, params={"beta": 0.9}))
assert kernels.loaded_libraries() == {} and op_def_registry.get("VarianceAdaptedStep") is None
with tf.Graph().as_default():
    optimizer.minimize(tf.reduce_sum(tf.square(tf.Variable(tf.ones([3])))))
assert list(kernels.loaded_libraries().values()) == [True], kernels.loaded_libraries()
assert op_def_registry.get("VarianceAdaptedStep") is not None
print("lazy")
"""
    environment = {**os.environ, "PYTHONPATH": str(REPO)}
    environment.pop(kernels.PURE_TF_ENV, None)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=environment, cwd=REPO)
    assert result.returncode == 0 and result.stdout.strip() == "lazy", result.stderr[-3000:]


def test_the_build_is_quiet_when_up_to_date_and_clear_without_a_compiler_or_on_failure(tmp_path):
    library = kernels.library_path(tf.__version__)
    before = library.stat().st_mtime_ns
    environment = {**os.environ, "PYTHONPATH": str(REPO)}
    environment.pop("CXX", None)
    build = [sys.executable, "-m", "tasks.training.kernels", "build"]
    up_to_date = subprocess.run(build, capture_output=True, text=True, env=environment, cwd=REPO)
    assert (up_to_date.returncode, up_to_date.stdout, up_to_date.stderr.strip()) == (0, "", ""), up_to_date.stderr
    assert library.stat().st_mtime_ns == before  # not rebuilt

    no_compiler = subprocess.run(
        build, capture_output=True, text=True, env={**environment, "CXX": str(tmp_path / "no-such-g++")}, cwd=REPO
    )
    assert no_compiler.returncode == 0 and no_compiler.stdout == ""
    assert "warning: no C++ compiler" in no_compiler.stderr and "make kernels" in no_compiler.stderr
    assert "apt-get install g++" in no_compiler.stderr

    failing = tmp_path / "failing-g++"
    failing.write_text("#!/bin/sh\necho 'k.cc:1: error: something the test made up' >&2\nexit 1\n")
    failing.chmod(failing.stat().st_mode | stat.S_IXUSR)
    failed = subprocess.run(build, capture_output=True, text=True, env={**environment, "CXX": str(failing)}, cwd=REPO)
    assert (
        failed.returncode == 1 and "error: compiling" in failed.stderr and "something the test made up" in failed.stderr
    )
    assert str(failing) in failed.stderr  # the command, to rerun by hand
    assert library.stat().st_mtime_ns == before and kernels.read_stamp(library)["command"][0] != str(failing)
    assert not [path for path in library.parent.iterdir() if path.name.endswith(".tmp")]

    usage = subprocess.run([*build[:-1], "compile"], capture_output=True, text=True, env=environment, cwd=REPO)
    assert usage.returncode == 2 and "usage:" in usage.stderr


# Loads the library of a build folder in a fresh process, as an M-SVAG task does, and says which path it took.
LOAD_IN_A_FRESH_PROCESS = """
import logging, sys
from pathlib import Path
logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
from tasks.training import kernels
kernels.BUILD_ROOT = Path(sys.argv[1])
from tasks.training.msvag import MSVAGOptimizer
from tasks.training.tf1 import tf
with tf.Graph().as_default():
    MSVAGOptimizer(0.1).minimize(tf.reduce_sum(tf.square(tf.Variable(tf.ones([3])))))
print("fell back" if kernels.variance_adapted_step_op() is None else "fused")
"""


def _environment(**extra: str) -> dict:
    environment = {**os.environ, "PYTHONPATH": str(REPO), **extra}
    environment.pop(kernels.PURE_TF_ENV, None)
    return environment


def copied_build(tmp_path: Path) -> Path:
    """A copy of the installed library and its stamp in a build folder of its own; returns the library."""
    installed = kernels.library_path(tf.__version__)
    library = tmp_path / "build" / installed.parent.name / kernels.LIBRARY_NAME
    library.parent.mkdir(parents=True)
    shutil.copy2(installed, library)
    shutil.copy2(kernels.stamp_path(installed), kernels.stamp_path(library))
    return library


def test_a_truncated_library_with_a_valid_stamp_falls_back_instead_of_crashing(tmp_path):
    # Red team 1: dlopen of a truncated library dies of SIGBUS (exit -7, or "Bus error" and 135), in every
    # M-SVAG/SVAG task. The stamp now vouches for the library's own bytes, checked before it is loaded.
    library = copied_build(tmp_path)
    with open(library, "r+b") as handle:
        handle.truncate(library.stat().st_size // 2)
    result = subprocess.run(
        [sys.executable, "-c", LOAD_IN_A_FRESH_PROCESS, str(library.parents[1])],
        capture_output=True,
        text=True,
        env=_environment(),
        cwd=REPO,
    )
    assert (result.returncode, result.stdout.strip()) == (0, "fell back"), (result.returncode, result.stderr[-3000:])
    warnings = [line for line in result.stderr.splitlines() if line.startswith("WARNING")]
    assert len(warnings) == 1, result.stderr[-3000:]
    assert f"fused M-SVAG/SVAG kernel {library} does not match the sha256 its build recorded" in warnings[0]
    assert "make kernels" in warnings[0] and "pure-TF" in warnings[0]


def test_a_foreign_library_that_its_stamp_vouches_for_falls_back_as_failed_to_load(tmp_path, monkeypatch, caplog):
    # Red team 1: a foreign .so loads, holds no VarianceAdaptedStep op, and training died of AttributeError.
    foreign = tmp_path / "tf-0.0" / kernels.LIBRARY_NAME
    foreign.parent.mkdir()
    source = tmp_path / "foreign.c"
    source.write_text("int some_other_library(void) { return 1; }\n")
    subprocess.run(["g++", "-shared", "-fPIC", "-x", "c", str(source), "-o", str(foreign)], check=True)
    stamp = {"source_sha256": kernels.source_sha256(), "library_sha256": sha256_file(foreign)}
    kernels.stamp_path(foreign).write_text(json.dumps(stamp))
    monkeypatch.setattr(kernels, "library_path", lambda version: foreign)
    with caplog.at_level(logging.WARNING, logger=kernels.__name__):
        assert kernels.variance_adapted_step_op() is None
        assert kernels.variance_adapted_step_op() is None  # warned once
    [warning] = [record.getMessage() for record in caplog.records]
    assert f"fused M-SVAG/SVAG kernel {foreign} failed to load" in warning and "no VarianceAdaptedStep op" in warning
    assert "make kernels" in warning


# Builds into a build folder of its own, with the compiler given in CXX.
BUILD_INTO = """
import sys
from pathlib import Path
from tasks.training import kernels
kernels.BUILD_ROOT = Path(sys.argv[1])
from tasks.training.kernels.build import main
sys.exit(main(sys.argv[2:]))
"""


def test_a_build_killed_before_its_rename_leaves_a_temp_file_that_the_next_build_sweeps(tmp_path):
    # Red team 10: a SIGKILL during `python -m tasks.training.kernels build` left a temp file that no
    # later build swept. Here the kill is real, at the failpoint between the temp library and its rename.
    compiler = tmp_path / "copying-g++"  # "compiles" by copying the installed library: no real build needed
    compiler.write_text(
        '#!/bin/sh\nwhile [ $# -gt 0 ]; do [ "$1" = -o ] && cp '
        f'"{kernels.library_path(tf.__version__)}" "$2"; shift; done\n'
    )
    compiler.chmod(0o755)
    root = tmp_path / "build"
    folder = root / kernels.library_path(tf.__version__).parent.name

    def build(*arguments: str, **extra: str) -> subprocess.CompletedProcess:
        command = [sys.executable, "-c", BUILD_INTO, str(root), "build", *arguments]
        return subprocess.run(
            command, capture_output=True, text=True, env=_environment(CXX=str(compiler), **extra), cwd=REPO
        )

    killed = build("--force", **{faults.ENV_VAR: "storage.temp-written"})
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    [leftover] = folder.iterdir()
    assert leftover.name.startswith(f".{kernels.LIBRARY_NAME}{TEMP_MARKER}")

    built = build()
    assert built.returncode == 0, built.stderr[-3000:]
    assert sorted(path.name for path in folder.iterdir()) == [kernels.LIBRARY_NAME, f"{kernels.LIBRARY_NAME}.json"]

    # An up-to-date build, which compiles nothing, sweeps too.
    planted = folder / f".{kernels.LIBRARY_NAME}{TEMP_MARKER}{WRITER_ID}-{_dead_pid()}-abcd1234.tmp"
    planted.write_bytes(b"half a library")
    again = build()
    assert (again.returncode, again.stderr) == (0, "")
    assert not planted.exists()


def _dead_pid() -> int:
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid
