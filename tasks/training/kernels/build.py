"""Compile the op library for the installed TensorFlow: `python -m tasks.training.kernels build` (`make kernels`).

Quiet when it builds or finds the library up to date; on failure it prints the command and the compiler's
output and exits 1. Without a C++ compiler it prints a warning and exits 0, because training still works
(the pure-TF path, same weights, slower); the test suite then fails on purpose (tests/test_msvag_kernel.py).

The flags, and why they matter (variance_adapted_step.cc explains the arithmetic):
- `-ffp-contract=off`: no fused multiply-add. The kernel is bit-identical to TF's ops only if every product
  is rounded before it is added, and GCC contracts a*b+c by default wherever the target has FMA.
- `-O2 -fvect-cost-model=dynamic`: vectorises the loop (SSE2, the x86-64 baseline; AVX measured no faster).
  Plain -O2's "very cheap" model refuses any loop that needs a scalar remainder, and the scalar loop made
  M-SVAG slower than the 14 TF ops it replaces (1.9x SGD's step time instead of 1.5x; vectorised: 1.25x).
  Nothing value-changing: no -ffast-math, -Ofast or -fno-trapping-math; vector lanes round as scalars do.
- TensorFlow's own `tf.sysconfig` compile and link flags: its headers, its C++ ABI, its Eigen alignment, and
  libtensorflow_framework, so the op registers with the running TF.

Up to date means: the library exists, was built from this source with this exact command, and has the
bytes that build wrote (all three are in the stamp beside it, `<library>.json`; the loader refuses a library
built from another source or whose bytes differ). It is compiled to a temporary file, loaded once as a
check, then renamed into place, so no process ever loads a half-written library. Every build first sweeps
the temp files that killed builds left in its folder (tasks.core.storage.sweep_temp_files).
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

from tasks.core.storage import atomic_path, ensure_dir, sha256_file, sweep_temp_files, write_json_atomic
from tasks.training.kernels import (
    SOURCE,
    library_matches_stamp,
    library_path,
    read_stamp,
    source_sha256,
    stamp_path,
)

OPTIMISATION_FLAGS = ("-O2", "-fvect-cost-model=dynamic", "-ffp-contract=off")
BASE_FLAGS = ("-std=c++17", "-shared", "-fPIC")


def compile_command(compiler: str, source: Path, output: Path, compile_flags, link_flags) -> list[str]:
    """The compiler command line: our flags, TF's compile flags, the source, the output, TF's link flags."""
    return [
        compiler,
        *BASE_FLAGS,
        *OPTIMISATION_FLAGS,
        *compile_flags,
        str(source),
        "-o",
        str(output),
        *link_flags,
    ]


def build(compiler: str | None = None, *, force: bool = False) -> int:
    """Build the library if it is missing or stale; return the exit status (see the module docstring)."""
    compiler = compiler or os.environ.get("CXX") or "g++"
    from tasks.training.tf1 import tf

    output = library_path(tf.__version__)
    if shutil.which(compiler) is None:
        print(
            f"warning: no C++ compiler ({compiler!r} not found), so {output} cannot be built: where it is "
            f"missing, M-SVAG/SVAG use the pure-TF path (same weights, slower steps) and `make test` fails its "
            f"kernel test. Install one (e.g. `apt-get install g++`), then run `make kernels`.",
            file=sys.stderr,
        )
        return 0
    compile_flags, link_flags = tf.sysconfig.get_compile_flags(), tf.sysconfig.get_link_flags()
    stamp = {
        "source_sha256": source_sha256(),
        "command": compile_command(compiler, SOURCE, output, compile_flags, link_flags),
    }
    sweep_temp_files(ensure_dir(output.parent))  # what killed builds left here
    recorded = read_stamp(output) or {}
    if not force and {key: recorded.get(key) for key in stamp} == stamp and library_matches_stamp(output, recorded):
        return 0
    try:
        # Built under a temp name beside the library, swept like any other dead writer's temp file, and
        # moved onto it only once it compiled and loaded; the stamp, atomic too, is written after it.
        with atomic_path(output, suffix=".tmp") as temporary:
            command = compile_command(compiler, SOURCE, temporary, compile_flags, link_flags)
            result = subprocess.run(command, capture_output=True, text=True)
            if result.returncode != 0:
                raise _BuildFailed(
                    f"error: compiling {SOURCE} failed (exit {result.returncode}); the pure-TF path still works.\n"
                    f"command: {shlex.join(command)}\n{result.stderr[-20000:]}"
                )
            try:
                tf.load_op_library(str(temporary))
            except (tf.errors.OpError, OSError) as error:
                raise _BuildFailed(f"error: {SOURCE} compiled, but the library does not load: {error}") from None
            temporary.chmod(0o755)
            stamp["library_sha256"] = sha256_file(temporary)
    except _BuildFailed as failure:
        print(failure, file=sys.stderr)
        return 1
    write_json_atomic(stamp_path(output), stamp)
    return 0


class _BuildFailed(Exception):
    """A compile or load failure: the temp library is removed and the installed one left as it was."""


def main(argv: list[str] | None = None) -> int:
    arguments = sys.argv[1:] if argv is None else argv
    if arguments[:1] != ["build"] or not set(arguments[1:]) <= {"--force"}:
        print("usage: python -m tasks.training.kernels build [--force]", file=sys.stderr)
        return 2
    return build(force="--force" in arguments)
