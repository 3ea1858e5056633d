"""Bounded reads from the head of a file: every length is checked against what is left
before anything is allocated, and what is kept in memory against a budget, so a hostile
header costs an error, never memory."""

from __future__ import annotations

import struct
from typing import BinaryIO

from downloader.errors import FormatError

_U64 = struct.Struct("<Q")
SKIP_BLOCK = 1 << 20  # how much of a run of strings is read at once to walk past it


class HeaderReader:
    """Reads little-endian values from a file, never past its end; keeps at most ``budget``
    bytes of it in memory and walks at most ``items`` items of lists in all."""

    def __init__(self, f: BinaryIO, size: int, kind: str, *, budget: int, items: int = 0) -> None:
        self._f = f
        self.size = size
        self.kind = kind  # "GGUF", "safetensors": for the messages
        self.pos = 0
        self.budget = budget
        self.items = items

    def walk(self, n: int, what: str) -> None:
        """Take ``n`` items from the allowance of list items (time, not memory: each is
        parsed in Python)."""
        if n > self.items:
            raise self.fail(f"{what}: {n} items, more than a {self.kind} header may hold")
        self.items -= n

    def fail(self, why: str) -> FormatError:
        """The error for this file: "not a valid KIND: why"."""
        return FormatError(f"not a valid {self.kind}: {why}")

    def need(self, n: int, what: str) -> None:
        """Raise unless ``n`` more bytes exist."""
        if n < 0 or self.pos + n > self.size:
            raise self.fail(
                f"{what} needs {n} bytes at byte {self.pos}, past the end of the file "
                f"({self.size} bytes: truncated?)"
            )

    def read(self, n: int, what: str) -> bytes:
        """The next ``n`` bytes, which count against the budget."""
        self.need(n, what)
        if n > self.budget:
            raise self.fail(f"{what} would take the header past {self.kind} limits ({n} bytes)")
        data = self._f.read(n)
        if len(data) != n:
            raise self.fail(f"{what}: the file ended early at byte {self.pos + len(data)}")
        self.pos += n
        self.budget -= n
        return data

    def skip(self, n: int, what: str) -> None:
        """Move past ``n`` bytes without reading them."""
        self.need(n, what)
        self._f.seek(n, 1)
        self.pos += n

    def skip_strings(self, count: int, what: str) -> None:
        """Move past ``count`` strings, each a u64 length and its bytes, keeping none. Reads
        a block at a time: a vocabulary of a million tokens is walked in a fraction of a
        second, where a read per token would take seconds."""
        while count:
            block = self._f.read(min(SKIP_BLOCK, self.size - self.pos))
            at = 0
            while count and at + 8 <= len(block):
                end = at + 8 + _U64.unpack_from(block, at)[0]
                if end > len(block):
                    break
                at, count = end, count - 1
            self._f.seek(self.pos + at)
            self.pos += at
            if count and at == 0:  # one string longer than a block, or the end of the file
                self.skip(self.u64(f"the length of one of {what}"), what)
                count -= 1

    def unpack(self, fmt: str, what: str) -> tuple[int | float | bool, ...]:
        """``struct.unpack`` of the next bytes (little-endian ``fmt``)."""
        size = struct.calcsize("<" + fmt)
        self.need(size, what)
        data = self._f.read(size)
        if len(data) != size:
            raise self.fail(f"{what}: the file ended early at byte {self.pos + len(data)}")
        self.pos += size
        return struct.unpack("<" + fmt, data)

    def u32(self, what: str) -> int:
        """The next unsigned 32-bit number."""
        return int(self.unpack("I", what)[0])

    def u64(self, what: str) -> int:
        """The next unsigned 64-bit number."""
        return int(self.unpack("Q", what)[0])
