"""Training throughput, side by side: the original feed_dict loop, Keras model.fit, and the project's loop.

On the same real training rows, model, batch size, optimizer and thread counts, in one invocation:

  (a) feed_dict  the original project's style, written here: float32 placeholders, the same model
                 builder (tasks.training.models), numpy shuffling per epoch and numpy slicing per step,
                 `sess.run([train_op, loss], feed_dict)` once per step;
  (b) keras      tf_keras `Sequential.fit` with the same layers (a benchmark-only peer; the product
                 is Keras-free), in its own process with TF2 behaviour on, `steps_per_execution` equal
                 to the project's chunk and its input pipeline built before the clock starts;
  (c) project    `tasks.training.loop.train_run` itself, one epoch into a temp folder; its metrics'
                 `examples_per_second` counts training only (no validation, no checkpoint);
  (d) bound      MLP: the step's 8 matrix products alone in an in-graph loop, nothing else (no loop
                 can beat it on this machine). CNN: the bare conv net, the same layers' forward,
                 backward and SGD update in an in-graph loop, with no data path and no metrics.

Each contender trains one epoch (the CNN: the first --cnn-rows rows) after a warm-up, in rounds a, b,
c, d, repeated --repeat times; ratios are taken within a round (same machine load) and the median over
rounds is reported, as is each contender's median throughput. Also printed: the project loop's
M-SVAG and SVAG step time relative to SGD's. Goals (one `goal` line each, then one for all; --check
exits 1 on a miss): MLP c/a >= 2, c/b >= 4 and c/d >= 0.90 for every optimizer; M-SVAG and SVAG step
time <= 1.35x SGD's; CNN c/a >= 1.0 and c/d >= 0.95. About 3 minutes with the defaults on 2 cores.

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

GOAL_VS_FEED_DICT = 2.0  # MLP, every optimizer
GOAL_VS_KERAS = 4.0  # MLP, every optimizer
GOAL_VS_MATMULS = 0.90  # MLP, (c)/(d)
GOAL_VARIANCE_ADAPTED = 1.35  # M-SVAG and SVAG step time over SGD's, MLP
GOAL_CNN_VS_FEED_DICT = 1.0
GOAL_CNN_VS_BARE = 0.95  # CNN, (c)/(d)
from contenders import MODELS, subset_arrays  # noqa: E402 - beside this script
from goal import goal_line  # noqa: E402 - beside this script
from workers import Worker  # noqa: E402 - beside this script

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
                    plan += [("matmul_bound" if model == "mlp" else "conv_bound", "-")]
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


def _ratio(results: dict, numerator: tuple, denominator: tuple) -> float | None:
    """Median over rounds of numerator/denominator, each taken within its round; None if either is missing."""
    top, bottom = results.get(numerator), results.get(denominator)
    if not top or not bottom:
        return None
    return _median([n / d for n, d in zip(top, bottom)])


def _print_table(results: dict, args: argparse.Namespace, optimizers: list[str]) -> int:
    load = os.getloadavg()[0]
    print(
        f"training throughput, examples/s (median of {args.repeat} rounds); ratios: median over rounds of the "
        f"within-round ratio; intra-op threads {args.threads}, inter-op 1; load average {load:.2f}"
    )
    print(
        f"  {'model':<9} {'batch':>5} {'optimizer':<9} {'(a) feed_dict':>14} {'(b) keras':>11} "
        f"{'(c) project':>12} {'(d) bound':>10} {'c/a':>6} {'c/b':>6} {'c/d':>6}"
    )
    goals: list[tuple[str, str, str, bool]] = []  # (name, measured, target, met)
    for model in MODELS:
        batch = MODELS[model][1]
        bound_key = (model, "-", "matmul_bound" if model == "mlp" else "conv_bound")
        bound = results.get(bound_key)
        for optimizer in optimizers:
            runs = [results.get((model, optimizer, contender)) for contender in ("feed_dict", "keras", "project")]
            if not all(runs):
                continue
            feed, keras, project = runs
            vs_feed = _ratio(results, (model, optimizer, "project"), (model, optimizer, "feed_dict"))
            vs_keras = _ratio(results, (model, optimizer, "project"), (model, optimizer, "keras"))
            vs_bound = _ratio(results, (model, optimizer, "project"), bound_key)
            print(
                f"  {model:<9} {batch:>5} {optimizer:<9} {_median(feed):>14,.0f} {_median(keras):>11,.0f} "
                f"{_median(project):>12,.0f} {_median(bound) if bound else float('nan'):>10,.0f} "
                f"{vs_feed:>6.2f} {vs_keras:>6.2f} {vs_bound if vs_bound is not None else float('nan'):>6.2f}"
            )
            if model == "mlp":
                goals.append(
                    (
                        f"mlp-{optimizer}-vs-feed-dict",
                        f"{vs_feed:.2f}",
                        f">= {GOAL_VS_FEED_DICT}",
                        vs_feed >= GOAL_VS_FEED_DICT,
                    )
                )
                goals.append(
                    (f"mlp-{optimizer}-vs-keras", f"{vs_keras:.2f}", f">= {GOAL_VS_KERAS}", vs_keras >= GOAL_VS_KERAS)
                )
                if vs_bound is not None:
                    goals.append(
                        (
                            f"mlp-{optimizer}-vs-matmuls",
                            f"{vs_bound:.2f}",
                            f">= {GOAL_VS_MATMULS}",
                            vs_bound >= GOAL_VS_MATMULS,
                        )
                    )
            else:
                goals.append(
                    (
                        f"cnn-{optimizer}-vs-feed-dict",
                        f"{vs_feed:.2f}",
                        f">= {GOAL_CNN_VS_FEED_DICT}",
                        vs_feed >= GOAL_CNN_VS_FEED_DICT,
                    )
                )
                if vs_bound is not None:
                    goals.append(
                        (
                            f"cnn-{optimizer}-vs-bare-graph",
                            f"{vs_bound:.2f}",
                            f">= {GOAL_CNN_VS_BARE}",
                            vs_bound >= GOAL_CNN_VS_BARE,
                        )
                    )
    print("  (d): mlp, the step's 8 matrix products alone in an in-graph loop; cnn_2c2d, the bare conv net")
    print("       (same layers, forward + backward + SGD update, in-graph, no data path and no metrics)")
    for name in ("msvag", "svag"):
        # step time ratio = SGD's examples/s over this optimizer's, within a round
        overhead = _ratio(results, ("mlp", "sgd", "project"), ("mlp", name, "project"))
        if overhead is not None:
            print(
                f"  project loop, mlp: {name} {_median(results[('mlp', name, 'project')]):,.0f} ex/s; "
                f"step time {overhead:.2f}x SGD's"
            )
            goals.append(
                (
                    f"mlp-{name}-step-vs-sgd",
                    f"{overhead:.2f}x",
                    f"<= {GOAL_VARIANCE_ADAPTED}x",
                    overhead <= GOAL_VARIANCE_ADAPTED,
                )
            )
    print("  (all figures: medians over rounds; every ratio is taken within a round, then its median)")
    for goal in goals:
        goal_line(*goal)
    met = sum(goal[3] for goal in goals)
    goal_line("train-throughput", f"{met} of {len(goals)} goals met", "all", met == len(goals))
    return 1 if met < len(goals) and args.check else 0


if __name__ == "__main__":
    sys.exit(main())
