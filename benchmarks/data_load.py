"""Cold decode versus the cached load that training really does, for the Fashion-MNIST training set.

Times (median of N rounds, each ratio taken within its round) gunzip + IDX parse of the training images
and labels, against what a training run does with the cache before it feeds the graph
(tasks.training.runstate.load_split): open and memory-map train.arrow and its split file, check the
split, and work out the positions of the 54,000 training and 6,000 validation rows. Nothing is gathered:
the graph is fed all 60,000 rows straight from the map, once, and gathers each training and validation
batch by position itself (the feed copy is the same for either source, so it is in neither timing).
The goal is a cached load at least 50x faster.

    python benchmarks/data_load.py [--raw-dir /usr/share/datasets/fashion-mnist] [--repeat 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without installing

from goal import goal_line  # noqa: E402 - beside this script

from tasks.data.arrays import write_arrays, write_indices  # noqa: E402
from tasks.data.dataset import DEBIAN_DIR  # noqa: E402
from tasks.data.idx import parse_images, parse_labels, read_gz  # noqa: E402
from tasks.data.split import stratified_split  # noqa: E402
from tasks.training.runstate import load_split  # noqa: E402

TRAIN_IMAGES = "train-images-idx3-ubyte.gz"
TRAIN_LABELS = "train-labels-idx1-ubyte.gz"
GOAL_RATIO = 50.0


def timed(work: Callable[[], object]) -> float:
    start = time.perf_counter()
    work()
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--raw-dir",
        type=Path,
        default=Path(DEBIAN_DIR),
        help=f"directory holding {TRAIN_IMAGES} and {TRAIN_LABELS} (default: %(default)s)",
    )
    parser.add_argument("--repeat", type=int, default=5, help="rounds; each ratio is taken within a round")
    parser.add_argument("--check", action="store_true", help="exit 1 when the goal is missed")
    args = parser.parse_args(argv)

    images_gz, labels_gz = args.raw_dir / TRAIN_IMAGES, args.raw_dir / TRAIN_LABELS
    for path in (images_gz, labels_gz):
        if not path.is_file():
            parser.error(f"{path} not found; pass --raw-dir or install the Debian package dataset-fashion-mnist")

    def decode() -> None:
        parse_images(read_gz(images_gz, kind="images"), str(images_gz))
        parse_labels(read_gz(labels_gz, kind="labels"), str(labels_gz))

    images = parse_images(read_gz(images_gz, kind="images"), str(images_gz))
    labels = parse_labels(read_gz(labels_gz, kind="labels"), str(labels_gz))
    with tempfile.TemporaryDirectory(prefix="data-load-bench-") as temp:
        arrow_path, split_path = Path(temp) / "train.arrow", Path(temp) / "split.arrow"
        write_arrays(arrow_path, images, labels)
        write_indices(split_path, stratified_split(labels, 600, seed=0))

        def cached_load() -> None:
            split = load_split(arrow_path, split_path)
            assert len(split.train_rows) + len(split.val_rows) == len(labels)

        rounds = [(timed(decode), timed(cached_load)) for _ in range(args.repeat)]
    decode_s = statistics.median(d for d, _ in rounds)
    cached_s = statistics.median(c for _, c in rounds)
    ratio = statistics.median(d / c for d, c in rounds)
    print(f"data load, {images.shape[0]:,} train images and labels, median of {args.repeat} rounds")
    print(f"  {'gunzip + parse (images, labels)':<40} {decode_s * 1e3:10.2f} ms")
    print(f"  {'open + map + row positions (load_split)':<40} {cached_s * 1e3:10.2f} ms")
    met = ratio >= GOAL_RATIO
    goal_line("data-load", f"{ratio:.1f}x", f">= {GOAL_RATIO:.0f}x", met)
    return 1 if args.check and not met else 0


if __name__ == "__main__":
    sys.exit(main())
