"""Facts about Fashion-MNIST (Xiao, Rasul & Vollgraf, 2017) that every stage shares.

The Debian package `dataset-fashion-mnist` recompressed the upstream files: their `.gz` bytes and md5
differ, the decompressed IDX payload does not. So the payload sha256 is the identity we verify; the
upstream `.gz` md5 is only a fast path.
"""

from __future__ import annotations

from dataclasses import dataclass

DEBIAN_DIR = "/usr/share/datasets/fashion-mnist"
UPSTREAM_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com"

IMAGE_MAGIC = 2051
LABEL_MAGIC = 2049
IMAGE_ROWS = 28
IMAGE_COLS = 28
IMAGE_PIXELS = IMAGE_ROWS * IMAGE_COLS
NUM_CLASSES = 10

CLASS_NAMES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)


@dataclass(frozen=True)
class RawFile:
    """One of the four published files."""

    name: str
    split: str  # "train" or "test"
    kind: str  # "images" or "labels"
    rows: int
    upstream_gz_md5: str
    payload_sha256: str
    payload_bytes: int


RAW_FILES = {
    raw.name: raw
    for raw in (
        RawFile(
            "train-images-idx3-ubyte.gz",
            "train",
            "images",
            60000,
            "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
            "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
            47040016,
        ),
        RawFile(
            "train-labels-idx1-ubyte.gz",
            "train",
            "labels",
            60000,
            "25c81989df183df01b3e8a0aad5dffbe",
            "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
            60008,
        ),
        RawFile(
            "t10k-images-idx3-ubyte.gz",
            "test",
            "images",
            10000,
            "bef4ecab320f06d8554ea6380940ec79",
            "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
            7840016,
        ),
        RawFile(
            "t10k-labels-idx1-ubyte.gz",
            "test",
            "labels",
            10000,
            "bb300cfdad3c16e7a12a480ee83cd310",
            "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
            10008,
        ),
    )
}

RAW_FILE_NAMES = tuple(RAW_FILES)
