"""IDX parsing and gzip handling: one test per way a raw file can be wrong, each asserting the message."""

from __future__ import annotations

import gzip
import hashlib
import struct
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from tasks.core.errors import DataError
from tasks.data.dataset import IMAGE_MAGIC, LABEL_MAGIC
from tasks.data.idx import MAX_ROWS, decode_pair, parse_images, parse_labels, read_gz
from tests.synthetic import gz, idx_images, idx_labels, make_images_labels


def assert_message(excinfo: pytest.ExceptionInfo, *parts: str) -> None:
    message = str(excinfo.value)
    for part in parts:
        assert part in message, f"{part!r} not in {message!r}"


@pytest.fixture
def sample() -> tuple[np.ndarray, np.ndarray]:
    return make_images_labels(20, seed=7)


def write_pair(directory: Path, images_payload: bytes, labels_payload: bytes) -> tuple[Path, Path]:
    images_path, labels_path = directory / "train-images-idx3-ubyte.gz", directory / "train-labels-idx1-ubyte.gz"
    images_path.write_bytes(gz(images_payload))
    labels_path.write_bytes(gz(labels_payload))
    return images_path, labels_path


def test_valid_pair_decodes_to_the_source_arrays(tmp_path, sample):
    images, labels = sample
    images_path, labels_path = write_pair(tmp_path, idx_images(images), idx_labels(labels))
    got_images, got_labels, info = decode_pair(images_path, labels_path)
    assert got_images.shape == (20, 784) and got_images.dtype == np.uint8
    np.testing.assert_array_equal(got_images, images)
    np.testing.assert_array_equal(got_labels, labels)
    assert info["rows"] == 20
    assert info["files"]["train-images-idx3-ubyte.gz"] == {
        "payload_sha256": hashlib.sha256(idx_images(images)).hexdigest(),
        "payload_bytes": 16 + 20 * 784,
    }
    assert info["files"]["train-labels-idx1-ubyte.gz"]["payload_bytes"] == 8 + 20


def test_parse_is_a_zero_copy_view(sample):
    payload = idx_images(sample[0])
    images = parse_images(payload, "x")
    assert not images.flags.writeable and np.shares_memory(images, np.frombuffer(payload, np.uint8))


def test_bad_magic_for_images(tmp_path, sample):
    payload = struct.pack(">I", 2052) + idx_images(sample[0])[4:]
    with pytest.raises(DataError) as excinfo:
        parse_images(payload, "train-images-idx3-ubyte.gz")
    assert_message(excinfo, "train-images-idx3-ubyte.gz", "expected IDX magic 2051", "found 2052", "re-fetch")


def test_labels_magic_in_images_file_says_swapped(sample):
    with pytest.raises(DataError) as excinfo:
        parse_images(idx_labels(sample[1]), "train-images-idx3-ubyte.gz")
    assert_message(excinfo, "expected IDX magic 2051", f"found {LABEL_MAGIC}", "swapped")


def test_bad_magic_for_labels(tmp_path, sample):
    images_path, labels_path = write_pair(tmp_path, idx_images(sample[0]), struct.pack(">II", 0x0D01, 20) + bytes(20))
    with pytest.raises(DataError) as excinfo:
        decode_pair(images_path, labels_path)
    assert_message(excinfo, str(labels_path), "expected IDX magic 2049", "found 3329 (0x00000D01", "re-fetch")


def test_image_dims_other_than_28x28(sample):
    payload = struct.pack(">IIII", IMAGE_MAGIC, 5, 32, 32) + bytes(5 * 32 * 32)
    with pytest.raises(DataError) as excinfo:
        parse_images(payload, "t10k-images-idx3-ubyte.gz")
    assert_message(excinfo, "t10k-images-idx3-ubyte.gz", "expected 28x28 images", "found 32x32")


def test_count_mismatch_between_images_and_labels(tmp_path, sample):
    images, labels = sample
    images_path, labels_path = write_pair(tmp_path, idx_images(images), idx_labels(labels[:19]))
    with pytest.raises(DataError) as excinfo:
        decode_pair(images_path, labels_path)
    assert_message(
        excinfo,
        str(images_path),
        str(labels_path),
        "expected as many labels as images",
        "found 20 images and 19 labels",
        "re-fetch both",
    )


def test_missing_image_bytes(sample):
    payload = idx_images(sample[0])[:-100]
    with pytest.raises(DataError) as excinfo:
        parse_images(payload, "train-images-idx3-ubyte.gz")
    assert_message(
        excinfo, "train-images-idx3-ubyte.gz", "expected 15,696 bytes", "found 15,596 bytes", "100 missing", "truncated"
    )


def test_missing_label_bytes(sample):
    with pytest.raises(DataError) as excinfo:
        parse_labels(idx_labels(sample[1])[:-1], "train-labels-idx1-ubyte.gz")
    assert_message(excinfo, "train-labels-idx1-ubyte.gz", "expected 28 bytes", "found 27 bytes", "1 missing")


def test_header_cut_short(sample):
    with pytest.raises(DataError) as excinfo:
        parse_images(idx_images(sample[0])[:10], "train-images-idx3-ubyte.gz")
    assert_message(excinfo, "expected a 16-byte IDX images header", "found only 10 bytes")


def test_trailing_image_bytes(sample):
    with pytest.raises(DataError) as excinfo:
        parse_images(idx_images(sample[0]) + b"\x00" * 3, "train-images-idx3-ubyte.gz")
    assert_message(excinfo, "expected 15,696 bytes", "found 15,699 bytes", "3 trailing bytes")


def test_trailing_label_bytes_inside_gzip_stop_decompression(tmp_path, sample):
    path = tmp_path / "train-labels-idx1-ubyte.gz"
    path.write_bytes(gz(idx_labels(sample[1]) + b"\x01" * 50))
    with pytest.raises(DataError) as excinfo:
        read_gz(path, kind="labels")
    assert_message(excinfo, str(path), "expected 28 bytes", "found at least 29 bytes", "trailing")


def test_label_outside_0_to_9(sample):
    labels = sample[1].copy()
    labels[3] = 10
    labels[11] = 255
    with pytest.raises(DataError) as excinfo:
        parse_labels(idx_labels(labels), "train-labels-idx1-ubyte.gz")
    assert_message(
        excinfo, "train-labels-idx1-ubyte.gz", "expected labels 0-9", "found 10 at row 3", "2 rows out of range"
    )


def test_truncated_gzip_stream(tmp_path, sample):
    path = tmp_path / "train-images-idx3-ubyte.gz"
    whole = gz(idx_images(sample[0]))
    path.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(DataError) as excinfo:
        read_gz(path)
    assert_message(
        excinfo, str(path), "expected a complete gzip stream", "ending inside gzip member 1", "truncated", "re-fetch"
    )


def test_gzip_missing_only_its_trailer(tmp_path, sample):
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(gz(idx_images(sample[0]))[:-8])  # all data present, CRC32 and size missing
    with pytest.raises(DataError) as excinfo:
        read_gz(path)
    assert_message(excinfo, "expected a complete gzip stream", "truncated")


def test_corrupt_gzip_stream(tmp_path, sample):
    path = tmp_path / "train-images-idx3-ubyte.gz"
    corrupt = bytearray(gz(idx_images(sample[0])))
    corrupt[-6] ^= 0xFF  # inside the CRC32 trailer: deflate data intact, checksum wrong
    path.write_bytes(bytes(corrupt))
    with pytest.raises(DataError) as excinfo:
        read_gz(path)
    assert_message(excinfo, str(path), "expected a valid gzip stream", "found corrupt data", "zlib:", "re-fetch")


def test_corrupt_deflate_data(tmp_path):
    path = tmp_path / "train-labels-idx1-ubyte.gz"
    path.write_bytes(b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03" + b"\xff" * 40)
    with pytest.raises(DataError) as excinfo:
        read_gz(path)
    assert_message(excinfo, str(path), "expected a valid gzip stream", "corrupt data in member 1")


def test_not_gzip_at_all(tmp_path, sample):
    path = tmp_path / "train-labels-idx1-ubyte.gz"
    path.write_bytes(idx_labels(sample[1]))
    with pytest.raises(DataError) as excinfo:
        read_gz(path)
    assert_message(
        excinfo, str(path), "expected the gzip magic 1f 8b at the start", "found 00 00", "uncompressed IDX file"
    )


def test_empty_and_missing_files(tmp_path):
    empty = tmp_path / "empty.gz"
    empty.write_bytes(b"")
    with pytest.raises(DataError) as excinfo:
        read_gz(empty)
    assert_message(excinfo, str(empty), "found an empty file")
    with pytest.raises(DataError) as excinfo:
        read_gz(tmp_path / "absent.gz")
    assert_message(excinfo, "absent.gz", "expected a readable gzip file", "No such file")


def test_garbage_after_gzip_member(tmp_path, sample):
    path = tmp_path / "train-labels-idx1-ubyte.gz"
    path.write_bytes(gz(idx_labels(sample[1])) + b"junk")
    with pytest.raises(DataError) as excinfo:
        read_gz(path)
    assert_message(excinfo, "expected the gzip magic 1f 8b after gzip member 1", "found 6a 75")


def test_concatenated_members_and_zero_padding_are_accepted(tmp_path, sample):
    payload = idx_labels(sample[1])
    path = tmp_path / "train-labels-idx1-ubyte.gz"
    path.write_bytes(gz(payload[:11]) + gz(payload[11:]) + b"\x00" * 16)
    np.testing.assert_array_equal(parse_labels(read_gz(path), str(path)), sample[1])


def test_huge_declared_count_refused_before_allocating():
    payload = struct.pack(">IIII", IMAGE_MAGIC, 0xFFFFFFFF, 28, 28)
    tracemalloc.start()
    try:
        with pytest.raises(DataError) as excinfo:
            parse_images(payload, "train-images-idx3-ubyte.gz")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert_message(
        excinfo,
        "train-images-idx3-ubyte.gz",
        f"expected at most {MAX_ROWS:,} images",
        "found a header declaring 4,294,967,295",
        "refused before allocating",
    )
    assert peak < 1 << 20


def test_declared_size_above_byte_cap_refused_before_decompressing(tmp_path):
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(gz(struct.pack(">IIII", IMAGE_MAGIC, 5000, 28, 28) + bytes(5000 * 784)))
    with pytest.raises(DataError) as excinfo:
        read_gz(path, max_bytes=1_000_000)
    assert_message(
        excinfo,
        str(path),
        "expected an IDX payload of at most 1,000,000 bytes",
        "found a header declaring 5,000 images (3,920,016 bytes)",
        "refused before decompressing",
    )


def test_gzip_bomb_stops_at_the_declared_size(tmp_path):
    # 40 MB of zeros compress to ~40 kB; the header declares 10 images, so inflating stops at ~8 kB.
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(struct.pack(">IIII", IMAGE_MAGIC, 10, 28, 28) + bytes(40_000_000), 1))
    tracemalloc.start()
    try:
        with pytest.raises(DataError) as excinfo:
            read_gz(path, kind="images")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert_message(excinfo, "expected 7,856 bytes", "found at least 7,857 bytes", "trailing")
    assert peak < 4 << 20  # the 1 MiB read buffer and little else, never the 40 MB


def test_zero_count_gives_empty_arrays(tmp_path):
    images_path, labels_path = write_pair(
        tmp_path, idx_images(np.zeros((0, 784), np.uint8)), idx_labels(np.zeros(0, np.uint8))
    )
    images, labels, info = decode_pair(images_path, labels_path)
    assert images.shape == (0, 784) and labels.shape == (0,) and info["rows"] == 0


def test_zero_count_with_trailing_data_is_an_error():
    with pytest.raises(DataError) as excinfo:
        parse_labels(struct.pack(">II", LABEL_MAGIC, 0) + b"\x01", "train-labels-idx1-ubyte.gz")
    assert_message(excinfo, "expected 8 bytes", "found 9 bytes", "1 trailing")
