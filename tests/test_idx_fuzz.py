"""Property tests of the IDX parser and gzip reader: whatever the bytes, the outcome is a DataError or
exactly the parse a plain reference reader gives. 1,100 examples in all.

The mutations are the ways real files go wrong: truncation, bit flips, trailing bytes, rewritten header
fields (including huge declared counts and dims), and zero counts.
"""

from __future__ import annotations

import gzip
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from tasks.core.errors import DataError
from tasks.data.dataset import IMAGE_MAGIC, IMAGE_PIXELS, LABEL_MAGIC
from tasks.data.idx import MAX_ROWS, parse_images, parse_labels, read_gz
from tests.synthetic import gz, idx_images, idx_labels

FUZZ = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
INTERESTING_WORDS = [0, 1, 3, 27, 28, 29, LABEL_MAGIC, IMAGE_MAGIC, 0x0D03, MAX_ROWS, MAX_ROWS + 1, 2**31, 2**32 - 1]


def reference_images(payload: bytes | None) -> np.ndarray | None:
    """What a correct reader returns, or None where it must refuse; written independently of tasks.data.idx."""
    if payload is None or len(payload) < 16:
        return None
    magic, count, rows, cols = struct.unpack(">IIII", payload[:16])
    if magic != IMAGE_MAGIC or (rows, cols) != (28, 28) or count > MAX_ROWS or len(payload) != 16 + count * 784:
        return None
    return np.array(bytearray(payload[16:]), dtype=np.uint8).reshape(count, IMAGE_PIXELS)


def reference_labels(payload: bytes | None) -> np.ndarray | None:
    if payload is None or len(payload) < 8:
        return None
    magic, count = struct.unpack(">II", payload[:8])
    if magic != LABEL_MAGIC or count > MAX_ROWS or len(payload) != 8 + count:
        return None
    labels = np.array(bytearray(payload[8:]), dtype=np.uint8)
    return labels if (labels < 10).all() else None


KINDS = {
    "images": (parse_images, reference_images),
    "labels": (parse_labels, reference_labels),
}


@st.composite
def valid_payloads(draw, kind: str) -> bytes:
    count = draw(st.integers(0, 3))
    if kind == "images":
        pixels = draw(st.binary(min_size=count * IMAGE_PIXELS, max_size=count * IMAGE_PIXELS))
        return idx_images(np.frombuffer(pixels, dtype=np.uint8).reshape(count, IMAGE_PIXELS))
    # Mostly valid classes, sometimes one just out of range.
    labels = draw(st.lists(st.integers(0, 9) | st.sampled_from([10, 11, 255]), min_size=count, max_size=count))
    return idx_labels(np.array(labels, dtype=np.uint8))


mutations = st.one_of(
    st.tuples(st.just("truncate"), st.integers(0, 4000)),
    st.tuples(st.just("append"), st.binary(min_size=1, max_size=24)),
    st.tuples(st.just("flip"), st.integers(0, 4000), st.integers(0, 7)),
    st.tuples(
        st.just("header_word"), st.integers(0, 3), st.sampled_from(INTERESTING_WORDS) | st.integers(0, 2**32 - 1)
    ),
)


def mutate(data: bytes, mutation: tuple) -> bytes:
    name, *args = mutation
    if name == "truncate":
        return data[: args[0] % (len(data) + 1)]
    if name == "append":
        return data + args[0]
    buffer = bytearray(data)
    if name == "flip" and buffer:
        buffer[args[0] % len(buffer)] ^= 1 << args[1]
    if name == "header_word" and len(buffer) >= 4 * args[0] + 4:
        struct.pack_into(">I", buffer, 4 * args[0], args[1])
    return bytes(buffer)


def check_parse(kind: str, data: bytes) -> None:
    parse, reference = KINDS[kind]
    expected = reference(data)
    try:
        got = parse(data, f"fuzz-{kind}")
    except DataError as exc:
        assert expected is None, f"valid payload refused: {exc}"
        event("refused")
        assert f"fuzz-{kind}" in str(exc) and "expected" in str(exc) and "found" in str(exc)
        return
    assert expected is not None, "invalid payload accepted"
    np.testing.assert_array_equal(got, expected)
    event("parsed")


@pytest.mark.parametrize("kind", ["images", "labels"])
@settings(FUZZ, max_examples=350)
@given(data=st.data(), steps=st.lists(mutations, max_size=3))
def test_parser_refuses_or_parses_exactly(kind, data, steps):
    payload = data.draw(valid_payloads(kind))
    for step in steps:
        payload = mutate(payload, step)
    check_parse(kind, payload)


@pytest.fixture(scope="module")
def fuzz_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


def python_gunzip(data: bytes) -> bytes | None:
    try:
        return gzip.decompress(data)
    except (OSError, EOFError, zlib.error):
        return None


@settings(FUZZ, max_examples=400)
@given(
    kind=st.sampled_from(["images", "labels"]),
    data=st.data(),
    payload_steps=st.lists(mutations, max_size=2),
    gz_steps=st.lists(mutations, max_size=2),
    members=st.integers(1, 2),
    max_bytes=st.sampled_from([256 * 1024 * 1024, 2000, 100]),
)
def test_gzip_reader_refuses_or_parses_exactly(fuzz_dir, kind, data, payload_steps, gz_steps, members, max_bytes):
    original = data.draw(valid_payloads(kind))
    payload = original
    for step in payload_steps:
        payload = mutate(payload, step)
    cut = len(payload) // 2
    clean_gz = gz(payload) if members == 1 else gz(payload[:cut]) + gz(payload[cut:])
    # Where each member's header flags byte (FLG, the 4th header byte) is in the clean file.
    flag_bytes = [3] if members == 1 else [3, len(gz(payload[:cut])) + 3]
    file_bytes = clean_gz
    for step in gz_steps:
        file_bytes = mutate(file_bytes, step)
    path = fuzz_dir / f"{kind}.gz"
    path.write_bytes(file_bytes)

    parse, reference = KINDS[kind]
    inflated = python_gunzip(file_bytes)
    expected = reference(inflated)
    if expected is not None and len(inflated) > max_bytes:
        expected = None  # over the cap: must be refused even though it is well formed
    try:
        got = parse(read_gz(path, max_bytes=max_bytes, kind=kind), str(path))
    except DataError as exc:
        assert str(path) in str(exc) and "expected" in str(exc) and "found" in str(exc)
        if expected is not None:
            # The one place zlib is stricter than Python's gzip module: reserved or FHCRC header flags,
            # of the first member or of a later one.
            flags_changed = any(
                at >= len(file_bytes) or file_bytes[at] != clean_gz[at] for at in flag_bytes if at < len(clean_gz)
            )
            assert "zlib:" in str(exc) and flags_changed, f"valid file refused: {exc}"
        event("refused")
        return
    assert expected is not None, "invalid file accepted"
    np.testing.assert_array_equal(got, expected)
    event("parsed")
