"""The Arrow cache of decoded images, labels and split indices.

Images and labels live in an Arrow IPC *file* (random-access format) with columns
`image: fixed_size_binary(784)` and `label: uint8`, in IDX row order, as one record batch. Loading
memory-maps the file and views the column buffers as numpy arrays, so a load copies nothing and costs
almost nothing however large the file.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pyarrow as pa

from tasks.core.errors import DataError
from tasks.core.storage import atomic_path, write_bytes_atomic
from tasks.data.dataset import IMAGE_PIXELS, NUM_CLASSES

IMAGE_FIELD = "image"
LABEL_FIELD = "label"
INDEX_FIELD = "row"

ARRAYS_SCHEMA = pa.schema([(IMAGE_FIELD, pa.binary(IMAGE_PIXELS)), (LABEL_FIELD, pa.uint8())])
INDEX_SCHEMA = pa.schema([(INDEX_FIELD, pa.int64())])


def write_arrays(path: str | os.PathLike, images: np.ndarray, labels: np.ndarray) -> None:
    """Write `images` (N×784 uint8) and `labels` (N uint8) as one record batch, atomically."""
    images = np.ascontiguousarray(images, dtype=np.uint8).reshape(-1, IMAGE_PIXELS)
    labels = np.ascontiguousarray(labels, dtype=np.uint8)
    if images.shape[0] != labels.shape[0]:
        raise DataError(f"{path}: {images.shape[0]} images but {labels.shape[0]} labels; expected equal counts")
    image_column = pa.FixedSizeBinaryArray.from_buffers(
        pa.binary(IMAGE_PIXELS), len(labels), [None, pa.py_buffer(images)]
    )
    batch = pa.record_batch([image_column, pa.array(labels, type=pa.uint8())], schema=ARRAYS_SCHEMA)
    _write_batch(path, batch)


def write_indices(path: str | os.PathLike, indices: np.ndarray) -> None:
    """Write a vector of row indices (int64), atomically."""
    write_bytes_atomic(path, encode_indices(indices))


def encode_indices(indices: np.ndarray) -> bytes:
    """The Arrow IPC file of a vector of row indices (int64), in memory: hashed before it is written."""
    batch = pa.record_batch([pa.array(np.asarray(indices, dtype=np.int64))], schema=INDEX_SCHEMA)
    sink = pa.BufferOutputStream()
    with pa.ipc.new_file(sink, batch.schema) as writer:
        writer.write_batch(batch)
    return sink.getvalue().to_pybytes()


def _write_batch(path: str | os.PathLike, batch: pa.RecordBatch) -> None:
    with atomic_path(path, suffix=".arrow") as temp:
        with pa.OSFile(str(temp), "wb") as sink, pa.ipc.new_file(sink, batch.schema) as writer:
            writer.write_batch(batch)


def _read_single_batch(path: str | os.PathLike, schema: pa.Schema) -> pa.RecordBatch:
    file_path = Path(path)
    if not file_path.is_file():
        raise DataError(f"{file_path}: Arrow cache file not found; run PrepareData to build it")
    try:
        source = pa.memory_map(str(file_path), "r")
        reader = pa.ipc.open_file(source)
        if not reader.schema.equals(schema):
            raise DataError(
                f"{file_path}: expected Arrow schema [{schema.to_string(show_schema_metadata=False)}], "
                f"found [{reader.schema.to_string(show_schema_metadata=False)}]; delete the cache and rerun PrepareData"
            )
        if reader.num_record_batches != 1:
            raise DataError(
                f"{file_path}: expected one record batch, found {reader.num_record_batches}; "
                "rebuild the cache with PrepareData"
            )
        return reader.get_batch(0)
    except (pa.ArrowInvalid, pa.ArrowIOError, OSError) as exc:
        raise DataError(f"{file_path}: not a readable Arrow IPC file ({exc}); rebuild it with PrepareData") from exc


def load_arrays(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Memory-map an images/labels file: (images N×784 uint8, labels N uint8), read-only, no copy."""
    batch = _read_single_batch(path, ARRAYS_SCHEMA)
    image_column, label_column = batch.column(0), batch.column(1)
    if image_column.null_count or label_column.null_count:
        raise DataError(f"{path}: expected no null rows, found some; rebuild the cache with PrepareData")
    rows = batch.num_rows
    image_buffer = image_column.buffers()[1]
    images = np.frombuffer(
        image_buffer, dtype=np.uint8, count=rows * IMAGE_PIXELS, offset=image_column.offset * IMAGE_PIXELS
    ).reshape(rows, IMAGE_PIXELS)
    labels = np.frombuffer(label_column.buffers()[1], dtype=np.uint8, count=rows, offset=label_column.offset)
    if rows and int(labels.max()) >= NUM_CLASSES:
        raise DataError(f"{path}: expected labels 0-9, found {int(labels.max())}; rebuild the cache with PrepareData")
    return images, labels


def load_indices(path: str | os.PathLike) -> np.ndarray:
    """Memory-map a vector of row indices (int64), read-only."""
    batch = _read_single_batch(path, INDEX_SCHEMA)
    column = batch.column(0)
    return np.frombuffer(column.buffers()[1], dtype=np.int64, count=batch.num_rows, offset=column.offset)
