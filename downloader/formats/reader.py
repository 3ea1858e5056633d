"""Bounded reads from the head of a file: every length is checked against what is left
before anything is allocated, so a hostile header costs an error, never memory."""

from __future__ import annotations

import struct
from typing import BinaryIO

from downloader.errors import FormatError


class HeaderReader:
    """Reads little-endian values from a file, never past its end."""

    def __init__(self, f: BinaryIO, size: int, kind: str) -> None:
        self._f = f
        self.size = size
        self.kind = kind  # "GGUF", "safetensors": for the messages
        self.pos = 0

    def fail(self, why: str) -> FormatError:
        return FormatError(f"not a valid {self.kind}: {why}")

    def need(self, n: int, what: str) -> None:
        """Raise unless ``n`` more bytes exist."""
        if n < 0 or self.pos + n > self.size:
            raise self.fail(
                f"{what} needs {n} bytes at byte {self.pos}, past the end of the file "
                f"({self.size} bytes: truncated?)"
            )

    def read(self, n: int, what: str) -> bytes:
        self.need(n, what)
        data = self._f.read(n)
        if len(data) != n:
            raise self.fail(f"{what}: the file ended early at byte {self.pos + len(data)}")
        self.pos += n
        return data

    def skip(self, n: int, what: str) -> None:
        self.need(n, what)
        self._f.seek(n, 1)
        self.pos += n

    def unpack(self, fmt: str, what: str) -> tuple[int | float | bool, ...]:
        return struct.unpack("<" + fmt, self.read(struct.calcsize("<" + fmt), what))

    def u32(self, what: str) -> int:
        return int(self.unpack("I", what)[0])

    def u64(self, what: str) -> int:
        return int(self.unpack("Q", what)[0])
