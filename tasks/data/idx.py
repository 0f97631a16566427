"""Parse and validate the gzip-compressed IDX files of Fashion-MNIST.

IDX format (Y. LeCun, http://yann.lecun.com/exdb/mnist/): a big-endian uint32 magic number whose third
byte is the element type (0x08: unsigned byte) and whose fourth is the number of dimensions, then one
big-endian uint32 per dimension, then the elements in C order. Fashion-MNIST uses two layouts:

    images: magic 2051 (0x00000803), count, 28, 28, then count*784 bytes
    labels: magic 2049 (0x00000801), count,         then count bytes, each 0-9

Everything here is strict: a wrong magic, wrong image size, missing or trailing bytes, labels out of
range, or a truncated or corrupt gzip stream raise `DataError` naming the file, what was expected and
what was found. Sizes are checked against the header before anything large is allocated, and
decompression stops as soon as the output outgrows what the header declares, so a gzip bomb costs at
most the declared size (itself capped).
"""

from __future__ import annotations

import hashlib
import os
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tasks.core.errors import DataError
from tasks.data.dataset import IMAGE_COLS, IMAGE_MAGIC, IMAGE_PIXELS, IMAGE_ROWS, LABEL_MAGIC, NUM_CLASSES
from tasks.data.gunzip import GZIP_MAGIC, GunzipStream, GzipFormatError

# Far above Fashion-MNIST (60,000 rows) and small enough that no header can make us allocate absurdly.
MAX_ROWS = 10_000_000
# 5x the largest real payload (train images: 47,040,016 bytes); a header declaring more is refused.
DEFAULT_MAX_PAYLOAD_BYTES = 256 * 1024 * 1024

IMAGES = "images"
LABELS = "labels"
_MAGIC_OF = {IMAGES: IMAGE_MAGIC, LABELS: LABEL_MAGIC}
_KIND_OF = {IMAGE_MAGIC: IMAGES, LABEL_MAGIC: LABELS}
_HEADER_BYTES = {IMAGES: 16, LABELS: 8}
_ROW_BYTES = {IMAGES: IMAGE_PIXELS, LABELS: 1}
_NDIM = {IMAGES: 3, LABELS: 1}

REFETCH_HINT = "quarantine or delete this file and re-fetch it (rerun the FetchFile task)"


@dataclass(frozen=True)
class IdxHeader:
    """The validated header of one IDX payload."""

    kind: str  # IMAGES or LABELS
    count: int

    @property
    def header_bytes(self) -> int:
        return _HEADER_BYTES[self.kind]

    @property
    def payload_bytes(self) -> int:
        """Exact length the whole payload must have: header plus count rows."""
        return self.header_bytes + self.count * _ROW_BYTES[self.kind]


def _fail(source: str, expected: str, found: str, action: str = REFETCH_HINT) -> DataError:
    return DataError(f"{source}: expected {expected}, found {found}; {action}")


def _describe_magic(magic: int) -> str:
    type_code, ndim = (magic >> 8) & 0xFF, magic & 0xFF
    return f"{magic} (0x{magic:08X}: type code 0x{type_code:02X}, {ndim} dims)"


def _peek_header(buffer: bytes | memoryview, source: str, kind: str | None) -> IdxHeader | None:
    """Validate as much of the header as `buffer` holds; return it once complete, else None.

    `kind` None accepts either layout. Checks run in file order so that the first wrong field is named.
    """
    if len(buffer) < 4:
        return None
    (magic,) = struct.unpack_from(">I", buffer, 0)
    expected_kinds = (kind,) if kind else (IMAGES, LABELS)
    if _KIND_OF.get(magic) not in expected_kinds:
        wanted = " or ".join(f"{_MAGIC_OF[k]} (0x{_MAGIC_OF[k]:08X}, {k})" for k in expected_kinds)
        hint = ""
        if magic in _KIND_OF:
            hint = f", which is a {_KIND_OF[magic]} file: are the images and labels files swapped?"
        elif bytes(buffer[:2]) == GZIP_MAGIC:
            hint = ", the gzip magic: the payload is still compressed (decompress it with read_gz)"
        raise _fail(
            source,
            f"IDX magic {wanted} for a Fashion-MNIST {' or '.join(expected_kinds)} file",
            f"{_describe_magic(magic)}{hint}",
        )
    found_kind = _KIND_OF[magic]
    header_bytes = _HEADER_BYTES[found_kind]
    if len(buffer) < header_bytes:
        return None
    dims = struct.unpack_from(f">{_NDIM[found_kind]}I", buffer, 4)
    count = dims[0]
    if found_kind == IMAGES and dims[1:] != (IMAGE_ROWS, IMAGE_COLS):
        raise _fail(source, f"{IMAGE_ROWS}x{IMAGE_COLS} images", f"{dims[1]}x{dims[2]} images in the header")
    if count > MAX_ROWS:
        raise _fail(
            source,
            f"at most {MAX_ROWS:,} {found_kind}",
            f"a header declaring {count:,} {found_kind}; refused before allocating it",
        )
    return IdxHeader(found_kind, count)


def _length_error(source: str, header: IdxHeader, found: int, at_least: bool = False) -> DataError:
    expected = header.payload_bytes
    if found < expected:
        detail = f"{found:,} bytes ({expected - found:,} missing: the file is truncated)"
    else:
        # Decompression stops at the first excess byte, so from read_gz the count is a lower bound.
        qualifier = "at least " if at_least else ""
        detail = f"{qualifier}{found:,} bytes ({qualifier}{found - expected:,} trailing bytes after the last row)"
    return _fail(
        source, f"{expected:,} bytes ({header.header_bytes}-byte header + {header.count:,} {header.kind})", detail
    )


def _checked_header(payload: bytes, source: str, kind: str) -> IdxHeader:
    header = _peek_header(payload, source, kind)
    if header is None:
        raise _fail(
            source,
            f"a {_HEADER_BYTES[kind]}-byte IDX {kind} header",
            f"only {len(payload)} bytes: the file is truncated",
        )
    if len(payload) != header.payload_bytes:
        raise _length_error(source, header, len(payload))
    return header


def parse_images(payload: bytes, source: str) -> np.ndarray:
    """Decode an IDX images payload into an (N, 784) uint8 array, a read-only view of `payload`."""
    header = _checked_header(payload, source, IMAGES)
    return np.frombuffer(
        payload, dtype=np.uint8, count=header.count * IMAGE_PIXELS, offset=header.header_bytes
    ).reshape(header.count, IMAGE_PIXELS)


def parse_labels(payload: bytes, source: str) -> np.ndarray:
    """Decode an IDX labels payload into an (N,) uint8 array of classes 0-9, a read-only view of `payload`."""
    header = _checked_header(payload, source, LABELS)
    labels = np.frombuffer(payload, dtype=np.uint8, count=header.count, offset=header.header_bytes)
    out_of_range = labels >= NUM_CLASSES
    if out_of_range.any():
        first_row = int(np.argmax(out_of_range))
        raise _fail(
            source,
            f"labels 0-{NUM_CLASSES - 1}",
            f"{int(labels[first_row])} at row {first_row} ({int(out_of_range.sum()):,} rows out of range)",
        )
    return labels


def read_gz(path: str | os.PathLike, max_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES, kind: str | None = None) -> bytes:
    """Decompress a gzip file (RFC 1952; concatenated members allowed) holding one IDX payload.

    Only the first 16 bytes are inflated before the IDX header is checked; from then on output is capped
    at the size the header declares (itself at most `max_bytes`), so a bomb or a lying header is refused
    after at most that many bytes. `kind` ("images"/"labels") makes the magic check strict. The exact
    length is left to `parse_images` / `parse_labels`.
    """
    source = str(Path(path))
    try:
        handle = open(path, "rb")
    except OSError as exc:
        raise _fail(
            source,
            "a readable gzip file",
            f"an error opening it ({exc.strerror or exc})",
            "check the raw data directory and re-fetch the file",
        ) from exc
    chunks: list[bytes] = []
    produced = 0
    header: IdxHeader | None = None
    with handle:
        stream = GunzipStream(handle)
        while True:
            # Before the header is known ask for just enough to read it; after, for one byte past the
            # declared size: getting that byte is how the excess is detected without inflating the rest.
            room = _HEADER_BYTES[IMAGES] - produced if header is None else header.payload_bytes - produced + 1
            try:
                out = stream.read(room)
            except GzipFormatError as exc:
                raise _fail(source, exc.expected, exc.found) from exc
            except OSError as exc:
                raise _fail(source, "a readable gzip file", f"a read error ({exc.strerror or exc})") from exc
            if not out:
                break
            chunks.append(out)
            produced += len(out)
            if header is None and produced >= 4:
                header = _peek_header(b"".join(chunks)[:16], source, kind)
                if header is not None and header.payload_bytes > max_bytes:
                    raise _fail(
                        source,
                        f"an IDX payload of at most {max_bytes:,} bytes",
                        f"a header declaring {header.count:,} {header.kind} "
                        f"({header.payload_bytes:,} bytes); refused before decompressing it",
                    )
            if header is not None and produced > header.payload_bytes:
                raise _length_error(source, header, produced, at_least=True)
    return b"".join(chunks)


def decode_pair(
    images_gz: str | os.PathLike, labels_gz: str | os.PathLike, max_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES
) -> tuple[np.ndarray, np.ndarray, dict]:
    """Decode one images/labels pair of .gz files.

    Returns (images N×784 uint8, labels N uint8, info) where info is
    {"rows": N, "files": {file name: {"payload_sha256", "payload_bytes"}}}.
    """
    images_path, labels_path = Path(images_gz), Path(labels_gz)
    images_payload = read_gz(images_path, max_bytes, kind=IMAGES)
    images = parse_images(images_payload, str(images_path))
    labels_payload = read_gz(labels_path, max_bytes, kind=LABELS)
    labels = parse_labels(labels_payload, str(labels_path))
    if images.shape[0] != labels.shape[0]:
        raise DataError(
            f"{images_path} and {labels_path}: expected as many labels as images, found {images.shape[0]:,} "
            f"images and {labels.shape[0]:,} labels; re-fetch both files from the same release"
        )
    info = {
        "rows": int(images.shape[0]),
        "files": {
            path.name: {"payload_sha256": hashlib.sha256(payload).hexdigest(), "payload_bytes": len(payload)}
            for path, payload in ((images_path, images_payload), (labels_path, labels_payload))
        },
    }
    return images, labels, info
