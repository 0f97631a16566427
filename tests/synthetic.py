"""Tiny synthetic Fashion-MNIST look-alikes: real IDX bytes, real gzip, learnable classes.

Each class has a fixed random prototype; an image is its prototype plus noise, so that a small model
learns it in a few epochs and a test can assert that the loss goes down. One image in ten looks like
another class, so accuracy stays below 1.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import struct
from pathlib import Path

import numpy as np

from tasks.data.dataset import IMAGE_COLS, IMAGE_MAGIC, IMAGE_ROWS, LABEL_MAGIC, NUM_CLASSES

TRAIN_IMAGES = "train-images-idx3-ubyte.gz"
TRAIN_LABELS = "train-labels-idx1-ubyte.gz"
TEST_IMAGES = "t10k-images-idx3-ubyte.gz"
TEST_LABELS = "t10k-labels-idx1-ubyte.gz"


def idx_images(images: np.ndarray) -> bytes:
    """IDX3 bytes of an (N, 28, 28) or (N, 784) uint8 array."""
    images = np.asarray(images, dtype=np.uint8).reshape(-1, IMAGE_ROWS, IMAGE_COLS)
    return struct.pack(">IIII", IMAGE_MAGIC, images.shape[0], IMAGE_ROWS, IMAGE_COLS) + images.tobytes()


def idx_labels(labels: np.ndarray) -> bytes:
    labels = np.asarray(labels, dtype=np.uint8)
    return struct.pack(">II", LABEL_MAGIC, labels.shape[0]) + labels.tobytes()


def gz(payload: bytes) -> bytes:
    return gzip.compress(payload, compresslevel=6, mtime=0)


def make_images_labels(count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """`count` learnable images (N×784 uint8) with balanced labels (N uint8)."""
    prototypes = np.random.default_rng(1234).integers(0, 256, size=(NUM_CLASSES, IMAGE_ROWS * IMAGE_COLS))
    rng = np.random.default_rng(seed)
    labels = (np.arange(count) % NUM_CLASSES).astype(np.uint8)
    rng.shuffle(labels)
    noise = rng.normal(0, 60, size=(count, IMAGE_ROWS * IMAGE_COLS))
    images = np.clip(prototypes[labels] * 0.6 + noise + 50, 0, 255).astype(np.uint8)
    # Every tenth image is drawn from another class's prototype: no model is perfect, as on real data,
    # so a report always has misclassified images to show.
    mislabelled = np.arange(count) % 10 == 9
    images[mislabelled] = np.clip(
        prototypes[(labels[mislabelled] + 1) % NUM_CLASSES] * 0.6 + noise[mislabelled] + 50, 0, 255
    ).astype(np.uint8)
    return images, labels


def payloads(train_count: int = 600, test_count: int = 200) -> dict[str, bytes]:
    """The four decompressed IDX payloads of a synthetic dataset, by published file name."""
    train_images, train_labels = make_images_labels(train_count, seed=1)
    test_images, test_labels = make_images_labels(test_count, seed=2)
    return {
        TRAIN_IMAGES: idx_images(train_images),
        TRAIN_LABELS: idx_labels(train_labels),
        TEST_IMAGES: idx_images(test_images),
        TEST_LABELS: idx_labels(test_labels),
    }


def write_raw_dir(directory: Path, train_count: int = 600, test_count: int = 200) -> dict[str, str]:
    """Write the four .gz files into `directory`; return {name: payload sha256}."""
    directory.mkdir(parents=True, exist_ok=True)
    checksums = {}
    for name, payload in payloads(train_count, test_count).items():
        (directory / name).write_bytes(gz(payload))
        checksums[name] = hashlib.sha256(payload).hexdigest()
    return checksums


def write_checksums_file(path: Path, checksums: dict[str, str]) -> Path:
    """A checksums file in the format of the `[pipeline] checksums_file` site setting."""
    path.write_text(json.dumps({name: {"payload_sha256": digest} for name, digest in checksums.items()}, indent=2))
    return path
