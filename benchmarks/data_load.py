"""Cold decode versus cached load of the Fashion-MNIST training images.

Times (best of N, time.perf_counter) gunzip + IDX parse of train-images-idx3-ubyte.gz against a load of
the memory-mapped Arrow cache built from it (tasks.data.arrays.load_arrays plus a read of one row, so the map
is really touched). The goal is a cached load at least 50x faster.

    python benchmarks/data_load.py [--raw-dir /usr/share/datasets/fashion-mnist] [--repeat 5]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without installing

from tasks.data.arrays import load_arrays, write_arrays  # noqa: E402
from tasks.data.dataset import DEBIAN_DIR  # noqa: E402
from tasks.data.idx import parse_images, parse_labels, read_gz  # noqa: E402

TRAIN_IMAGES = "train-images-idx3-ubyte.gz"
TRAIN_LABELS = "train-labels-idx1-ubyte.gz"
GOAL_RATIO = 50.0


def best_of(repeat: int, work: Callable[[], object]) -> float:
    timings = []
    for _ in range(repeat):
        start = time.perf_counter()
        work()
        timings.append(time.perf_counter() - start)
    return min(timings)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--raw-dir",
        type=Path,
        default=Path(DEBIAN_DIR),
        help=f"directory holding {TRAIN_IMAGES} and {TRAIN_LABELS} (default: %(default)s)",
    )
    parser.add_argument("--repeat", type=int, default=5, help="timings per measurement; the best is kept")
    args = parser.parse_args(argv)

    images_gz, labels_gz = args.raw_dir / TRAIN_IMAGES, args.raw_dir / TRAIN_LABELS
    for path in (images_gz, labels_gz):
        if not path.is_file():
            parser.error(f"{path} not found; pass --raw-dir or install the Debian package dataset-fashion-mnist")

    def decode() -> None:
        parse_images(read_gz(images_gz, kind="images"), str(images_gz))

    images = parse_images(read_gz(images_gz, kind="images"), str(images_gz))
    labels = parse_labels(read_gz(labels_gz, kind="labels"), str(labels_gz))
    with tempfile.TemporaryDirectory(prefix="data-load-bench-") as temp:
        arrow_path = Path(temp) / "train.arrow"
        write_arrays(arrow_path, images, labels)

        def cached_load() -> int:
            cached_images, cached_labels = load_arrays(arrow_path)
            return int(cached_images[-1].sum()) + int(cached_labels[-1])  # page in real data, not just the header

        decode_s = best_of(args.repeat, decode)
        cached_s = best_of(args.repeat, cached_load)

    ratio = decode_s / cached_s
    rows = [
        ("gunzip + parse train images", f"{decode_s * 1e3:10.2f} ms"),
        ("memory-mapped cached load", f"{cached_s * 1e3:10.3f} ms"),
        ("speed-up", f"{ratio:10.0f} x  (goal >= {GOAL_RATIO:.0f} x)"),
    ]
    print(f"data load, {images.shape[0]:,} train images, best of {args.repeat}")
    for label, value in rows:
        print(f"  {label:<30} {value}")
    return 0 if ratio >= GOAL_RATIO else 1


if __name__ == "__main__":
    sys.exit(main())
