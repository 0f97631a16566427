"""Cold end to end: `luigi --module pipeline FullReport --workers 2` into a fresh artifacts root.

Times the whole command (fetch from the Debian folder, decode, split, every TrainRun and EvaluateRun,
the report) as one process tree, and measures its memory two ways:

  peak tree RSS   the largest sum of RSS over the luigi process and all its descendants, polled with
                  psutil every --poll seconds (shared pages of forked workers count once per process,
                  so this over-states; PSS, which splits shared pages, is printed beside it)
  max process RSS the largest RSS of any single process of the tree: getrusage(RUSAGE_CHILDREN).ru_maxrss,
                  exact (kernel-tracked), but blind to several workers being large at the same time

Efficiency: after the run, each (model, batch size, optimizer) of its runs trains alone, one epoch on the
first --probe-rows training rows, with the project's loop (its per-run rate, as train_throughput's (c)).
The ideal is the summed training-step time of all runs (epochs × steps × batch / that rate) divided by
the training slots (min of --workers and luigi.cfg's [resources] training); the printed ratio is wall/ideal.
So the ratio counts everything that is not a training step: imports, graph builds, validation,
checkpoints, evaluation, the data stage, the report, scheduling gaps and two runs sharing the machine.

Goals (on this 2-core machine, configs/default.yaml): wall/ideal <= 1.3, wall time <= 4 min and peak
tree RSS <= 1.5 GiB.
The artifacts root is a new temp folder (removed afterwards unless --keep), so nothing is reused;
sources = the Debian folder, other site settings from luigi.cfg.

    .venv/bin/python benchmarks/full_report.py [--config configs/default.yaml] [--workers 2] [--check]
    .venv/bin/python benchmarks/full_report.py --config configs/smoke.yaml        # about a minute
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))  # run from a checkout without installing
from goal import goal_line  # noqa: E402 - beside this script

GOAL_SECONDS = 4 * 60
GOAL_EFFICIENCY = 1.3
GOAL_RSS_BYTES = int(1.5 * 2**30)
DEBIAN_DIR = "/usr/share/datasets/fashion-mnist"
GIB = 2**30


def luigi_command() -> list[str]:
    script = Path(sys.executable).parent / "luigi"
    return [str(script)] if script.is_file() else [sys.executable, "-m", "luigi"]


def tree_memory(root) -> tuple[int, int, int]:
    """(sum of RSS, sum of PSS, number of processes) over `root` and its descendants, now."""
    import psutil

    rss = pss = count = 0
    try:
        processes = [root] + root.children(recursive=True)
    except psutil.Error:
        return 0, 0, 0
    for process in processes:
        try:
            info = process.memory_full_info()
        except psutil.Error:
            continue  # it ended between the listing and the read
        rss += info.rss
        pss += getattr(info, "pss", info.rss)
        count += 1
    return rss, pss, count


def run_and_watch(command: list[str], env: dict, poll: float, log_path: Path) -> dict:
    """Run `command`, polling its tree's memory; return its exit code, wall time and peaks."""
    import psutil

    started = time.perf_counter()
    with open(log_path, "w") as log:
        process = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        watched = psutil.Process(process.pid)
        peak_rss = peak_pss = peak_count = 0
        while process.poll() is None:
            rss, pss, count = tree_memory(watched)
            peak_rss, peak_pss, peak_count = max(peak_rss, rss), max(peak_pss, pss), max(peak_count, count)
            time.sleep(poll)
    wall = time.perf_counter() - started
    max_process_rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024  # Linux: KiB
    return {
        "returncode": process.returncode,
        "wall_seconds": wall,
        "peak_tree_rss": peak_rss,
        "peak_tree_pss": peak_pss,
        "max_processes": peak_count,
        "max_process_rss": max_process_rss,
    }


def run_records(artifacts: Path) -> list[dict]:
    """Every finished run's run.json under the artifacts root, read once."""
    return [json.loads(path.read_text()) for path in sorted(artifacts.glob("runs/**/run.json"))]


def training_summary(records: list[dict]) -> tuple[int, float, float]:
    """(TrainRuns finished, sum of their attempt wall seconds, mean examples/s) from their run.json records."""
    rates = [record["examples_per_second"] for record in records if record.get("examples_per_second")]
    return (
        len(records),
        sum(record.get("attempt_wall_seconds", 0.0) for record in records),
        sum(rates) / len(rates) if rates else 0.0,
    )


def training_slots(workers: int) -> int:
    """min(--workers, luigi.cfg's [resources] training): how many TrainRuns run at once."""
    import configparser

    parser = configparser.ConfigParser()
    parser.read(REPO_ROOT / "luigi.cfg")
    return max(1, min(workers, parser.getint("resources", "training", fallback=workers)))


def _rate_key(settings: dict) -> tuple:
    """What a run's training rate depends on: model, batch size, optimizer."""
    return (
        json.dumps(settings["model"], sort_keys=True),
        settings["training"]["batch_size"],
        settings["optimizer"]["name"],
    )


def ideal_seconds(
    artifacts: Path, records: list[dict], slots: int, probe_rows: int, threads: int
) -> tuple[float, dict]:
    """(summed training-step seconds of every run at its per-run rate / slots, {key: probed examples/s})."""
    from contenders import subset_arrays
    from workers import Worker

    from tasks.core.layout import Layout

    first_of: dict[tuple, dict] = {}
    for record in records:
        first_of.setdefault(_rate_key(record["settings"]), record["settings"])
    rates: dict[tuple, float] = {}
    worker = Worker(tf2=False, threads=threads)
    try:
        with tempfile.TemporaryDirectory(prefix="rate-probe-data-") as temp:
            subsets: dict[tuple, tuple[Path, Path]] = {}
            for key, settings in first_of.items():
                split = settings["split"]
                # A per-seed split (`seed: per_seed`) has one file per seed; the rate does not depend on which.
                split_seed = split["seed"] if isinstance(split["seed"], int) else 0
                source = (
                    Layout(artifacts).train_arrow,
                    Layout(artifacts).split_arrow(split["validation_per_class"], split_seed),
                )
                if source not in subsets:
                    folder = Path(temp) / str(len(subsets))
                    folder.mkdir()
                    subsets[source] = subset_arrays(*source, probe_rows, folder)
                train_arrow, split_arrow = subsets[source]
                job = {
                    "contender": "settings_epoch",
                    "settings": settings,
                    "threads": threads,
                    "train_arrow": str(train_arrow),
                    "split_arrow": str(split_arrow),
                    "model": key[0],
                    "optimizer": key[2],
                }
                rates[key] = worker.run(job)
    finally:
        worker.close()
    total = 0.0
    for record in records:
        settings = record["settings"]
        examples = record["epochs_completed"] * record["steps_per_epoch"] * settings["training"]["batch_size"]
        total += examples / rates[_rate_key(settings)]
    return total / slots, rates


def in_run_step_seconds(records: list[dict]) -> float:
    """Summed training-step seconds of every run as the runs timed themselves (run.json's examples/s)."""
    total = 0.0
    for record in records:
        examples = record["epochs_completed"] * record["steps_per_epoch"] * record["settings"]["training"]["batch_size"]
        total += examples / record["examples_per_second"] if record["examples_per_second"] else 0.0
    return total


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--config",
        type=Path,
        default=REPO_ROOT / "configs" / "default.yaml",
        help="experiment YAML (default: %(default)s)",
    )
    parser.add_argument("--workers", type=int, default=2, help="luigi --workers (default: %(default)s)")
    parser.add_argument("--sources", default=DEBIAN_DIR, help="the data source folder (default: %(default)s)")
    parser.add_argument("--checksums-file", type=Path, help="[pipeline] checksums_file (default: luigi.cfg's)")
    parser.add_argument("--date", default="2026-01-02", help="FullReport --date")
    parser.add_argument("--poll", type=float, default=0.2, help="seconds between memory samples")
    parser.add_argument(
        "--probe-rows",
        type=int,
        default=60_000,
        help="training rows of each per-run rate probe (default: all; a short epoch over-states its fixed costs)",
    )
    parser.add_argument("--threads", type=int, default=1, help="intra-op threads of the rate probe (luigi.cfg's: 1)")
    parser.add_argument("--keep", action="store_true", help="keep the temp artifacts root and print its path")
    parser.add_argument("--check", action="store_true", help="exit 1 when a goal is missed")
    args = parser.parse_args(argv)
    try:
        import psutil  # noqa: F401
    except ImportError:
        parser.error("psutil is needed: pip install psutil (or the project's 'bench' extra)")
    if not args.config.is_file():
        parser.error(f"{args.config} not found; pass --config (e.g. configs/smoke.yaml)")

    folder = Path(tempfile.mkdtemp(prefix="full-report-bench-"))
    try:
        artifacts = folder / "artifacts"
        site = folder / "site.cfg"
        site.write_text(
            f"[pipeline]\nartifacts_root = {artifacts}\nsources = {json.dumps([args.sources])}\n"
            + (f"checksums_file = {args.checksums_file.resolve()}\n" if args.checksums_file else "")
        )
        env = dict(os.environ, LUIGI_CONFIG_PATH=str(site), TF_CPP_MIN_LOG_LEVEL="2")
        command = luigi_command() + [
            "--module",
            "pipeline",
            "FullReport",
            "--config",
            str(args.config.resolve()),
            "--date",
            args.date,
            "--workers",
            str(args.workers),
        ]
        load_before = os.getloadavg()[0]
        result = run_and_watch(command, env, args.poll, folder / "luigi.log")
        if result["returncode"] != 0:
            tail = (folder / "luigi.log").read_text(errors="replace")[-3000:]
            print(f"FullReport exited {result['returncode']}; log tail:\n{tail}", file=sys.stderr)
            return 1
        records = run_records(artifacts)
        runs, train_seconds, rate = training_summary(records)
        slots = training_slots(args.workers)
        ideal, rates = ideal_seconds(artifacts, records, slots, args.probe_rows, args.threads)
        in_run = in_run_step_seconds(records)
    finally:
        if args.keep:
            print(f"kept {folder}", file=sys.stderr)
        else:
            shutil.rmtree(folder, ignore_errors=True)

    wall, tree_rss = result["wall_seconds"], result["peak_tree_rss"]
    print(
        f"cold FullReport, {args.config.name}, --workers {args.workers}, fresh artifacts root; "
        f"load average before {load_before:.2f}"
    )
    print(f"  {'wall time':<34} {wall:8.1f} s    (goal <= {GOAL_SECONDS} s)")
    print(
        f"  {'peak tree RSS (sum, psutil poll)':<34} {tree_rss / GIB:8.2f} GiB  "
        f"(goal <= {GOAL_RSS_BYTES / GIB:.1f} GiB)"
    )
    print(f"  {'peak tree PSS (sum, psutil poll)':<34} {result['peak_tree_pss'] / GIB:8.2f} GiB")
    print(f"  {'max single-process RSS (rusage)':<34} {result['max_process_rss'] / GIB:8.2f} GiB")
    print(f"  {'processes in the tree, at most':<34} {result['max_processes']:8d}")
    print(
        f"  {'TrainRuns':<34} {runs:8d}    ({train_seconds:.0f} s in train_run calls, mean {rate:,.0f} training ex/s)"
    )
    print(
        "  per-run rates (alone, examples/s): "
        + ", ".join(
            f"{optimizer} {value:,.0f}" for (_, _, optimizer), value in sorted(rates.items(), key=lambda kv: kv[0][2])
        )
    )
    ratio = wall / ideal
    print(
        f"  training steps as timed inside the runs (concurrent runs sharing the machine): {in_run / slots:.1f} s "
        f"per slot, {in_run / slots / ideal:.2f}x the ideal; everything else: {wall - in_run / slots:.1f} s"
    )
    print(f"efficiency: wall {wall:.1f} s, ideal {ideal:.3g} s, ratio {ratio:.2f} ({slots} training slots)")
    met = wall <= GOAL_SECONDS and tree_rss <= GOAL_RSS_BYTES and ratio <= GOAL_EFFICIENCY
    goal_line("full-report-efficiency", f"{ratio:.2f}", f"<= {GOAL_EFFICIENCY}", ratio <= GOAL_EFFICIENCY)
    goal_line("full-report-wall", f"{wall:.1f} s", f"<= {GOAL_SECONDS} s", wall <= GOAL_SECONDS)
    goal_line(
        "full-report-rss", f"{tree_rss / GIB:.2f} GiB", f"<= {GOAL_RSS_BYTES / GIB:.1f} GiB", tree_rss <= GOAL_RSS_BYTES
    )
    return 1 if args.check and not met else 0


if __name__ == "__main__":
    sys.exit(main())
