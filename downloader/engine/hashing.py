"""Digests: re-checking written blocks with XXH3, and the SHA-256 that trails the download.

The SHA-256 hasher reads back the contiguous prefix of the file as it grows (from the page
cache, in a thread), so that when the last byte lands only the tail is left to hash instead
of one more pass over the whole file.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable, Iterable

from downloader.engine.partfile import PartFile
from downloader.engine.plan import Plan
from storage import ChunkRecord

READ_SIZE = 2 << 20


class TrailingSha256:
    """SHA-256 of a file being written, following its contiguous written prefix."""

    def __init__(self, part: PartFile, prefix: Callable[[], int]) -> None:
        self._part = part
        self._prefix = prefix
        self._sha = hashlib.sha256()
        self._buffer = bytearray()  # READ_SIZE, allocated at the first read back
        self.hashed = 0
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._done = False

    def start(self) -> None:
        """Begin following the prefix in the background."""
        self._task = asyncio.create_task(self._follow(), name=f"sha256 {self._part.path.name}")

    def poke(self) -> None:
        """The prefix may have grown."""
        self._wake.set()

    async def finish(self, size: int) -> str:
        """Hash up to ``size`` (everything is written now) and return the hex digest."""
        self._done = True
        self._wake.set()
        if self._task is not None:
            await self._task
        await self._catch_up(size)
        return self._sha.hexdigest()

    async def stop(self) -> None:
        """Abandon hashing (a pause or a failure)."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _follow(self) -> None:
        while not self._done:
            await self._wake.wait()
            self._wake.clear()
            await self._catch_up(self._prefix())

    async def _catch_up(self, upto: int) -> None:
        while self.hashed < upto:
            length = min(READ_SIZE, upto - self.hashed)
            if len(self._buffer) < length:  # a small file never needs the whole READ_SIZE
                self._buffer = bytearray(length)
            got = await self._part.feed(self._sha, self.hashed, self._buffer, length)
            if not got:
                raise OSError(f"{self._part.path} is shorter than its written prefix {upto}")
            self.hashed += got


async def bad_blocks(part: PartFile, chunks: Iterable[ChunkRecord], block: int) -> set[int]:
    """Offsets of the written blocks whose bytes no longer match their XXH3 digests."""
    bad: set[int] = set()
    for c in chunks:
        if c.done:
            bad.update(await part.check_blocks(c.start, c.done, block, c.xxh3))
    return bad


async def seed_tails(part: PartFile, plan: Plan) -> int:
    """Feed each resumed span's running XXH3 the partial block the ledger recorded, read
    back from the ``.part``, so that block's digest comes out right when it completes.

    The prefix is read either way, so it is checked either way, after a clean stop too (at
    most a block per span, never the whole file): a prefix that no longer matches its
    digest, or the ``.part`` cut short, is dropped back to its last whole block. Returns the
    bytes dropped."""
    dropped = 0
    buffer = bytearray(min(READ_SIZE, plan.block))
    for span in plan.spans:
        if span.seeded:
            continue
        length = span.done % plan.block
        at = span.start + span.done - length
        while length:
            got = await part.feed(span.hasher, at, buffer, min(length, len(buffer)))
            if not got:
                break
            at, length = at + got, length - got
        if length or span.hasher.digest() != span.tail:
            dropped += plan.drop_tail(span)
        else:
            span.seeded = True
    return dropped
