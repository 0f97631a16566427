"""One strict, bounded gzip reader (RFC 1952) for every place that inflates a raw file.

`GunzipStream(handle).read(limit)` inflates on demand and returns at most `limit` bytes, so the caller
decides how much output it will ever hold: a gzip bomb costs what the caller asks for, never what the
file would expand to. Concatenated members are one stream (RFC 1952 §2.2) and zero padding between
or after members is skipped, as gzip(1) does. A bad magic number, corrupt deflate data or a CRC
mismatch, and a stream that ends inside a member raise `GzipFormatError` with what was expected and
what was found, for the caller to phrase in its own error type.
"""

from __future__ import annotations

import zlib
from typing import BinaryIO

GZIP_MAGIC = b"\x1f\x8b"
GZIP_WBITS = 16 + zlib.MAX_WBITS  # zlib parses the gzip header and checks the CRC32/ISIZE trailer itself
READ_CHUNK = 1 << 20

MAGIC, CORRUPT, TRUNCATED = "magic", "corrupt", "truncated"


class GzipFormatError(Exception):
    """The bytes are not a sound gzip stream; `problem` is MAGIC, CORRUPT or TRUNCATED."""

    def __init__(self, problem: str, expected: str, found: str):
        super().__init__(f"expected {expected}, found {found}")
        self.problem = problem
        self.expected = expected
        self.found = found


class GunzipStream:
    """Inflate the gzip file open in `handle`, a bounded piece at a time."""

    def __init__(self, handle: BinaryIO, read_chunk: int = READ_CHUNK):
        self._handle = handle
        self._read_chunk = read_chunk
        self._data = b""  # compressed bytes read but not yet given to zlib
        self._member: zlib._Decompress | None = None  # None between members (and before the first)
        self.members = 0
        self.produced = 0

    def read(self, limit: int) -> bytes:
        """Up to `limit` (> 0) more bytes of the payload; b"" only at the clean end of the last member."""
        while True:
            if self._member is None and not self._start_member():
                return b""
            assert self._member is not None
            try:
                out = self._member.decompress(self._data, limit)
            except zlib.error as exc:
                raise GzipFormatError(
                    CORRUPT, "a valid gzip stream", f"corrupt data in member {self.members} (zlib: {exc})"
                ) from None
            self.produced += len(out)
            if self._member.eof:
                self._data = self._member.unused_data
                self._member = None
            else:
                self._data = self._member.unconsumed_tail
            if out:
                return out
            if self._member is not None and not self._data:
                # zlib gave nothing and holds no pending output: it needs more input.
                self._data = self._handle.read(self._read_chunk)
                if not self._data:
                    raise GzipFormatError(
                        TRUNCATED,
                        "a complete gzip stream",
                        f"the stream ending inside gzip member {self.members} after {self.produced:,} bytes "
                        "(truncated download?)",
                    )

    def _start_member(self) -> bool:
        """Check the next member's magic and open it; False at the clean end of the file."""
        if self.members:
            self._data = self._data.lstrip(b"\x00")
            while not self._data:
                self._data = self._handle.read(self._read_chunk)
                if not self._data:
                    return False
                self._data = self._data.lstrip(b"\x00")
        elif not self._data:
            self._data = self._handle.read(self._read_chunk)
        if len(self._data) < len(GZIP_MAGIC):
            self._data += self._handle.read(self._read_chunk)
        if self._data[: len(GZIP_MAGIC)] != GZIP_MAGIC:
            where = "at the start" if not self.members else f"after gzip member {self.members}"
            looks = ", an uncompressed IDX file" if self._data[:3] == b"\x00\x00\x08" else ""
            found = f"{self._data[:2].hex(' ')}{looks}" if self._data else "an empty file"
            raise GzipFormatError(MAGIC, f"the gzip magic 1f 8b {where}", found)
        self._member = zlib.decompressobj(GZIP_WBITS)
        self.members += 1
        return True
