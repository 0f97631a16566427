"""Training throughput, side by side: the original feed_dict loop, Keras model.fit, and the project's loop.

On the same real training rows, model, batch size, optimizer and thread counts, in one invocation:

  (a) feed_dict  the original project's style, written here: float32 placeholders, the same model
                 builder (tasks.training.models), numpy shuffling per epoch and numpy slicing per step,
                 `sess.run([train_op, loss], feed_dict)` once per step;
  (b) keras      tf_keras `Sequential.fit` with the same layers (a benchmark-only peer; the product
                 is Keras-free), in its own process with TF2 behaviour on;
  (c) project    `tasks.training.loop.train_run` itself, one epoch into a temp folder; its metrics'
                 `examples_per_second` counts training only (no validation, no checkpoint);
  (d) matmuls    MLP only: the step's 8 matrix products alone in an in-graph loop, nothing else. No
                 loop can beat it on this machine, so it bounds c/a and c/b.

Each contender trains one epoch (the CNN: the first --cnn-rows rows) after a warm-up, in rounds a, b,
c, repeated --repeat times; ratios are taken within a round (same machine load) and the median over
rounds is reported, as is each contender's median throughput. Also printed: the project loop's
M-SVAG and SVAG step time relative to SGD's. Goals (checked with --check): on the MLP, c/a >= 2 and
c/b >= 4 for every optimizer. About 3 minutes with the defaults on 2 cores.

    .venv/bin/python benchmarks/train_throughput.py [--repeat 3] [--threads 1] [--check]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))  # run from a checkout without installing

GOAL_VS_FEED_DICT = 2.0
GOAL_VS_KERAS = 4.0
from contenders import MODELS, Worker, subset_arrays  # noqa: E402 - beside this script
from goal import goal_line  # noqa: E402 - beside this script

# --- the parent: rounds, ratios, table ------------------------------------------------------------


def _median(values: list[float]) -> float:
    return statistics.median(values)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--artifacts",
        type=Path,
        default=REPO_ROOT / "artifacts",
        help="artifacts root holding data/arrays/train.arrow and the split (default: %(default)s)",
    )
    parser.add_argument("--split", default="split-v600-s0.arrow", help="split file under data/arrays/")
    parser.add_argument("--repeat", type=int, default=3, help="rounds; ratios are medians over rounds")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="intra-op threads for every contender (inter-op: 1); luigi.cfg's default is 1",
    )
    parser.add_argument("--optimizers", default="sgd,adam", help="compared optimizers (sgd, adam)")
    parser.add_argument(
        "--cnn-rows", type=int, default=2560, help="training rows of the shorter cnn_2c2d epoch; 0 skips the CNN"
    )
    parser.add_argument("--cnn-optimizers", default="sgd", help="optimizers for the CNN rows (default: %(default)s)")
    parser.add_argument("--no-msvag", action="store_true", help="skip the M-SVAG/SVAG overhead rows")
    parser.add_argument("--check", action="store_true", help="exit 1 when a goal is missed")
    args = parser.parse_args(argv)

    arrays = args.artifacts / "data" / "arrays"
    train_arrow, split_arrow = arrays / "train.arrow", arrays / args.split
    for path in (train_arrow, split_arrow):
        if not path.is_file():
            parser.error(f"{path} not found; build it with `luigi --module pipeline PrepareData` or pass --artifacts")
    optimizers = [name.strip() for name in args.optimizers.split(",") if name.strip()]
    cnn_optimizers = [name.strip() for name in args.cnn_optimizers.split(",") if name.strip()]
    for name in optimizers + cnn_optimizers:
        if name not in ("sgd", "adam"):
            parser.error(f"--optimizers: {name!r} has no Keras peer here; use sgd and/or adam")

    graph_worker, keras_worker = Worker(tf2=False, threads=args.threads), Worker(tf2=True, threads=args.threads)
    results: dict[tuple[str, str, str], list[float]] = {}
    try:
        with tempfile.TemporaryDirectory(prefix="train-bench-data-") as temp:
            datasets = {"mlp": (train_arrow, split_arrow)}
            if args.cnn_rows:
                datasets["cnn_2c2d"] = subset_arrays(train_arrow, split_arrow, args.cnn_rows, Path(temp))
            for round_index in range(args.repeat):
                for model, (train_path, split_path) in datasets.items():
                    params, batch = MODELS[model]
                    extra = [] if args.no_msvag or model != "mlp" else ["msvag", "svag"]
                    plan = [
                        (contender, optimizer)
                        for optimizer in (optimizers if model == "mlp" else cnn_optimizers)
                        for contender in ("feed_dict", "keras", "project")
                    ]
                    plan += [("project", name) for name in extra]
                    plan += [("matmul_bound", "-")] if model == "mlp" else []
                    for contender, optimizer in plan:
                        job = {
                            "contender": contender,
                            "model": model,
                            "model_params": params,
                            "batch_size": batch,
                            "optimizer": optimizer,
                            "threads": args.threads,
                            "train_arrow": str(train_path),
                            "split_arrow": str(split_path),
                        }
                        worker = keras_worker if contender == "keras" else graph_worker
                        value = worker.run(job)
                        results.setdefault((model, optimizer, contender), []).append(value)
                        print(
                            f"  round {round_index + 1}/{args.repeat}  {model:<9} {optimizer:<6} {contender:<10}"
                            f"{value:>10,.0f} ex/s",
                            file=sys.stderr,
                            flush=True,
                        )
    finally:
        graph_worker.close()
        keras_worker.close()

    return _print_table(results, args, list(dict.fromkeys(optimizers + cnn_optimizers)))


def _print_table(results: dict, args: argparse.Namespace, optimizers: list[str]) -> int:
    load = os.getloadavg()[0]
    print(
        f"training throughput, examples/s (median of {args.repeat} rounds); ratios: median over rounds of the "
        f"within-round ratio; intra-op threads {args.threads}, inter-op 1; load average {load:.2f}"
    )
    header = (
        f"  {'model':<9} {'batch':>5} {'optimizer':<9} {'(a) feed_dict':>14} {'(b) keras':>11} "
        f"{'(c) project':>12} {'c/a':>6} {'c/b':>6}"
    )
    print(header)
    missed = []
    for model in MODELS:
        batch = MODELS[model][1]
        for optimizer in optimizers:
            runs = [results.get((model, optimizer, contender)) for contender in ("feed_dict", "keras", "project")]
            if not all(runs):
                continue
            feed, keras, project = runs
            vs_feed = _median([c / a for a, c in zip(feed, project)])
            vs_keras = _median([c / b for b, c in zip(keras, project)])
            print(
                f"  {model:<9} {batch:>5} {optimizer:<9} {_median(feed):>14,.0f} {_median(keras):>11,.0f} "
                f"{_median(project):>12,.0f} {vs_feed:>6.2f} {vs_keras:>6.2f}"
            )
            if model == "mlp" and (vs_feed < GOAL_VS_FEED_DICT or vs_keras < GOAL_VS_KERAS):
                missed.append(
                    f"{model}/{optimizer}: c/a {vs_feed:.2f} (goal >= {GOAL_VS_FEED_DICT}), "
                    f"c/b {vs_keras:.2f} (goal >= {GOAL_VS_KERAS})"
                )
    bound = results.get(("mlp", "-", "matmul_bound"))
    if bound:
        # Within-round ratios to (d), medians over rounds: the same method as every other ratio here.
        reach = {
            optimizer: _median([c / d for c, d in zip(results[("mlp", optimizer, "project")], bound)])
            for optimizer in optimizers
            if results.get(("mlp", optimizer, "project"))
        }
        print(
            f"  (d) mlp matmuls alone (8 per step, in-graph, nothing else): {_median(bound):,.0f} ex/s; (c) reaches "
            + ", ".join(f"{optimizer} {share:.0%}" for optimizer, share in reach.items())
            + " of it"
        )
    sgd = results.get(("mlp", "sgd", "project"))
    for name in ("msvag", "svag"):
        runs = results.get(("mlp", name, "project"))
        if runs and sgd:
            overhead = _median([s / m for s, m in zip(sgd, runs)])
            print(f"  project loop, mlp: {name} {_median(runs):,.0f} ex/s; step time {overhead:.2f}x SGD's")
    print("  (all figures: medians over rounds; every ratio is taken within a round, then its median)")
    goal_line(
        "train-throughput-mlp",
        "all met" if not missed else "; ".join(missed),
        f"c/a >= {GOAL_VS_FEED_DICT}, c/b >= {GOAL_VS_KERAS} for every optimizer",
        not missed,
    )
    return 1 if missed and args.check else 0


if __name__ == "__main__":
    sys.exit(main())
