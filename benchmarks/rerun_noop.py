"""A no-op rerun: `luigi --module pipeline FullReport` on finished artifacts, timed as a whole process.

Scheduling a finished DAG should cost little more than starting Python and importing Luigi, and must
not import TensorFlow. This times (best of --repeat, wall clock of the whole process):

    luigi --module pipeline FullReport --config <cfg> --date <date>     on artifacts that are complete
    python -c 'import luigi'                                           the floor

prints both and their ratio, and checks (in a separate run under `python -X importtime`) that no
`tensorflow` module was imported. Goal: the rerun in <= 2 s.

Without --artifacts, it first builds finished artifacts cheaply in a temp folder: a tiny synthetic
dataset (tests/synthetic.py), a tiny config, and a temp site cfg named by LUIGI_CONFIG_PATH (so the
checkout's artifacts/ is never touched). With --artifacts and --config it times those instead (they
must be finished, for --date).

    .venv/bin/python benchmarks/rerun_noop.py [--repeat 5] [--check]
    .venv/bin/python benchmarks/rerun_noop.py --artifacts artifacts --config configs/smoke.yaml --date 2026-01-02
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))  # run from a checkout without installing
from goal import goal_line  # noqa: E402 - beside this script

GOAL_SECONDS = 2.0
DEFAULT_DATE = "2026-01-02"

TINY_CONFIG = """\
# rerun_noop.py: the cheapest complete experiment, only there to be rerun.
experiment: rerun-noop
model: {name: logreg}
training: {epochs: 1, batch_size: 50}
split: {validation_per_class: 10, seed: 0}
seeds: [0]
optimizers:
  - {name: sgd, learning_rate: 0.1}
  - {name: adam, learning_rate: 0.001}
"""


def luigi_command() -> list[str]:
    """The `luigi` console script next to this interpreter (as a user types it), else `python -m luigi`."""
    script = Path(sys.executable).parent / "luigi"
    return [str(script)] if script.is_file() else [sys.executable, "-m", "luigi"]


def best_wall_seconds(command: list[str], env: dict, repeat: int) -> float:
    timings = []
    for _ in range(repeat):
        started = time.perf_counter()
        done = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True)
        timings.append(time.perf_counter() - started)
        if done.returncode != 0:
            raise SystemExit(f"{' '.join(command)} exited {done.returncode}:\n{done.stderr[-3000:]}")
    return min(timings)


def build_tiny_artifacts(folder: Path, date: str) -> tuple[dict, Path]:
    """A finished FullReport of TINY_CONFIG under folder/artifacts; returns (env, config path)."""
    from tests import synthetic

    raw = folder / "source"
    checksums = synthetic.write_checksums_file(
        folder / "checksums.json", synthetic.write_raw_dir(raw, train_count=600, test_count=100)
    )
    config = folder / "rerun-noop.yaml"
    config.write_text(TINY_CONFIG)
    site = folder / "site.cfg"
    site.write_text(
        f"[pipeline]\nartifacts_root = {folder / 'artifacts'}\nsources = {json.dumps([str(raw)])}\n"
        f"checksums_file = {checksums}\n"
    )
    env = dict(os.environ, LUIGI_CONFIG_PATH=str(site), TF_CPP_MIN_LOG_LEVEL="2")
    started = time.perf_counter()
    command = luigi_command() + ["--module", "pipeline", "FullReport", "--config", str(config), "--date", date]
    done = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=900)
    if done.returncode != 0:
        raise SystemExit(f"building the tiny artifacts failed ({done.returncode}):\n{done.stderr[-3000:]}")
    print(f"built finished tiny artifacts in {time.perf_counter() - started:.1f} s under {folder}", file=sys.stderr)
    return env, config


def imported_tensorflow(command: list[str], env: dict) -> list[str]:
    """Top-level modules named tensorflow* that `python -X importtime` saw the command import."""
    if command[0] != sys.executable:
        command = [sys.executable, "-m", "luigi"] + command[1:]
    done = subprocess.run(
        [command[0], "-X", "importtime"] + command[1:], cwd=REPO_ROOT, env=env, capture_output=True, text=True
    )
    if done.returncode != 0:
        raise SystemExit(f"the importtime run exited {done.returncode}:\n{done.stderr[-3000:]}")
    modules = [line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines() if line.startswith("import time:")]
    return sorted({name for name in modules if name.split(".")[0] in ("tensorflow", "tf_keras", "keras")})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--artifacts", type=Path, help="a finished artifacts root (default: build a tiny one)")
    parser.add_argument("--config", type=Path, help="the experiment YAML finished under --artifacts")
    parser.add_argument("--date", default=DEFAULT_DATE, help="FullReport --date (default: %(default)s)")
    parser.add_argument("--repeat", type=int, default=5, help="timings per command; the best is kept")
    parser.add_argument("--check", action="store_true", help="exit 1 when a goal is missed")
    args = parser.parse_args(argv)
    if (args.artifacts is None) != (args.config is None):
        parser.error("pass both --artifacts and --config, or neither (then tiny artifacts are built)")
    dt.date.fromisoformat(args.date)

    with tempfile.TemporaryDirectory(prefix="rerun-noop-") as temp:
        if args.artifacts is None:
            env, config = build_tiny_artifacts(Path(temp), args.date)
        else:
            site = Path(temp) / "site.cfg"
            site.write_text(f"[pipeline]\nartifacts_root = {args.artifacts.resolve()}\n")
            env, config = dict(os.environ, LUIGI_CONFIG_PATH=str(site)), args.config.resolve()
        rerun = luigi_command() + ["--module", "pipeline", "FullReport", "--config", str(config), "--date", args.date]
        probe = subprocess.run(rerun, cwd=REPO_ROOT, env=env, capture_output=True, text=True)
        output = probe.stdout + probe.stderr
        if probe.returncode != 0 or "ran successfully" in output:
            raise SystemExit(
                f"the artifacts are not finished: a rerun did work or failed ({probe.returncode}); "
                f"run FullReport to completion first:\n{output[-2000:]}"
            )
        rerun_s = best_wall_seconds(rerun, env, args.repeat)
        floor_s = best_wall_seconds([sys.executable, "-c", "import luigi"], env, args.repeat)
        tensorflow_modules = imported_tensorflow(rerun, env)

    print(
        f"no-op rerun of FullReport on finished artifacts, whole process, best of {args.repeat}; "
        f"load average {os.getloadavg()[0]:.2f}"
    )
    print(f"  {'luigi --module pipeline FullReport (no-op)':<46} {rerun_s:7.2f} s   (goal <= {GOAL_SECONDS:.1f} s)")
    print(f"  {'python -c import luigi':<46} {floor_s:7.2f} s")
    print(f"  {'ratio':<46} {rerun_s / floor_s:7.1f} x")
    print(
        f"  {'TensorFlow imported':<46} {'yes: ' + ', '.join(tensorflow_modules[:3]) if tensorflow_modules else 'no'}"
    )
    met = rerun_s <= GOAL_SECONDS and not tensorflow_modules
    tf_note = "" if not tensorflow_modules else ", TensorFlow imported"
    goal_line("rerun-noop", f"{rerun_s:.2f} s{tf_note}", f"<= {GOAL_SECONDS:.1f} s, no TensorFlow", met)
    return 1 if args.check and not met else 0


if __name__ == "__main__":
    sys.exit(main())
