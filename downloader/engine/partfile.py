"""The partial file (``<final>.part`` unless its source names it otherwise): allocated up
front, written in place at offsets, synced, renamed.

All blocking calls run in threads. Writes are never abandoned half-way: a cancelled caller
stops waiting, but ``close`` waits for every write still running, so the descriptor is never
closed (and its number reused) under a thread that is writing to it.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import errno
import os
import shutil
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import xxhash

from downloader.durable import rename_durably
from downloader.errors import DiskError, DiskFullError

if TYPE_CHECKING:
    from storage import FileRecord

_libc = (
    ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True) if sys.platform == "linux" else None
)


@dataclass(frozen=True, slots=True)
class PartStat:
    """What the ledger records about the ``.part`` at a checkpoint."""

    size: int
    mtime_ns: int


PART_SUFFIX = ".part"  # what a partial file is called unless its source says otherwise


def partial_path(file: FileRecord | Path, suffix: str | None = None) -> Path:
    """Where a file's bytes are written until every check has passed: the final name plus
    the suffix its source chose, recorded in the file's ``meta`` (``partial_suffix``: the
    Hugging Face cache's ``.incomplete``), else ``.part``. Give the file's record, or its
    final path and the suffix. The one place that names a partial file: the engine, the
    cache, ``verify``, the disk check and purges all ask here.

    A file recorded before its source chose a suffix has none in its ``meta``: it keeps the
    ``.part`` it was started under, so a download paused then resumes where it stopped."""
    if isinstance(file, Path):
        return file.with_name(file.name + (suffix or PART_SUFFIX))
    return partial_path(Path(file.local_path), file.meta.get("partial_suffix"))


def check_space(path: Path, size: int) -> None:
    """``DiskFullError`` now, before anything is allocated, if the folder of ``path`` cannot
    hold a file of ``size`` bytes (counting what its ``.part`` holds already). Blocking."""
    folder = path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        held = path.stat().st_blocks * 512
    except FileNotFoundError:
        held = 0
    free = shutil.disk_usage(folder).free
    if size - held > free:
        raise DiskFullError(str(path), size, free=free)


class PartFile:
    """An open ``.part`` file."""

    def __init__(self, path: Path, fd: int, preallocate: bool = True) -> None:
        self.path = path
        self._fd = fd
        self._preallocate = preallocate
        self._pending: set[asyncio.Future[object]] = set()
        self._closed = False

    @classmethod
    async def open(
        cls, path: Path, size: int | None, *, truncate: bool = False, preallocate: bool = True
    ) -> PartFile:
        """Open (creating) ``path``, sized to ``size`` bytes when it is known: reserved on
        disk with ``preallocate``, else sparse."""
        return await asyncio.to_thread(cls._open, path, size, truncate, preallocate)

    @classmethod
    def _open(cls, path: Path, size: int | None, truncate: bool, preallocate: bool) -> PartFile:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            # O_NOFOLLOW: a symlink planted where our .part goes is refused, never written
            # through (it could point anywhere).
            flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | (os.O_TRUNC if truncate else 0)
            fd = os.open(path, flags, 0o644)
        except OSError as e:
            raise _disk_error(path, e) from e
        try:
            if size is not None:
                _allocate(fd, size, preallocate)
        except OSError as e:
            os.close(fd)
            raise _disk_error(path, e, size) from e
        return cls(path, fd, preallocate)

    async def write(
        self,
        offset: int,
        views: Sequence[memoryview],
        hasher: xxhash.xxh3_64,
        block: int,
        end: int,
    ) -> list[bytes]:
        """Write ``views`` back to back at ``offset`` and feed them to ``hasher``, the running
        XXH3 of the block they continue. Returns the digests of the blocks they completed: a
        block ends at a multiple of ``block`` or at ``end``. Hashing rides on the write's
        thread hop, off the event loop."""
        return await self._run(self._write, offset, views, hasher, block, end)

    def _write(
        self,
        offset: int,
        views: Sequence[memoryview],
        hasher: xxhash.xxh3_64,
        block: int,
        end: int,
    ) -> list[bytes]:
        total = sum(len(v) for v in views)
        try:
            written = os.pwritev(self._fd, views, offset)
            if written < total:  # short writes are legal; finish the rest
                rest = memoryview(b"".join(views))
                while written < total:
                    written += os.pwrite(self._fd, rest[written:], offset + written)
        except OSError as e:
            raise _disk_error(self.path, e) from e
        digests = []
        at = offset
        for view in views:
            used = 0
            while used < len(view):
                boundary = min((at // block + 1) * block, end)
                take = min(len(view) - used, boundary - at)
                hasher.update(view[used : used + take])
                used += take
                at += take
                if at == boundary:
                    digests.append(hasher.digest())
                    hasher.reset()
        return digests

    async def feed(self, hasher: Any, offset: int, buffer: bytearray, length: int) -> int:
        """Read up to ``length`` bytes at ``offset`` into ``buffer`` (reused, so hashing a
        whole file allocates nothing) and feed them to ``hasher``; returns the bytes read."""
        return await self._run(self._feed, hasher, offset, buffer, length)

    def _feed(self, hasher: Any, offset: int, buffer: bytearray, length: int) -> int:
        view = memoryview(buffer)[:length]
        got = os.preadv(self._fd, [view], offset)
        hasher.update(view[:got])
        return got

    async def read(self, offset: int, length: int) -> bytes:
        """Read up to ``length`` bytes at ``offset``."""
        return await self._run(os.pread, self._fd, length, offset)

    async def check_blocks(self, start: int, length: int, block: int, digests: bytes) -> list[int]:
        """Offsets of the blocks in ``[start, start + length)`` whose XXH3 differs from
        ``digests`` (8 bytes per block), read and hashed in one thread hop."""
        return await self._run(self._check_blocks, start, length, block, digests)

    def _check_blocks(self, start: int, length: int, block: int, digests: bytes) -> list[int]:
        return bad_block_offsets(self._fd, start, length, block, digests)

    async def sync(self) -> PartStat:
        """Make every completed write durable (``fdatasync``), then report size and mtime."""
        # A write whose caller was cancelled still runs in its thread. Let it land first: one
        # landing after our fstat would change the mtime we record, and the next run would
        # take a clean stop for an unclean one and re-hash the whole file.
        await self._await_running_calls()
        return await self._run(self._sync)

    def _sync(self) -> PartStat:
        try:
            (os.fdatasync if hasattr(os, "fdatasync") else os.fsync)(self._fd)
            st = os.fstat(self._fd)
        except OSError as e:
            raise _disk_error(self.path, e) from e
        return PartStat(st.st_size, st.st_mtime_ns)

    async def truncate(self, size: int) -> None:
        """Empty the file and allocate it anew (a restart from zero)."""
        await self._run(self._truncate, size)

    def _truncate(self, size: int) -> None:
        try:
            os.ftruncate(self._fd, 0)
            _allocate(self._fd, size, self._preallocate)
        except OSError as e:
            raise _disk_error(self.path, e, size) from e

    async def close(self) -> None:
        """Wait for writes still running, then close."""
        if self._closed:
            return
        while self._pending:
            await self._await_running_calls()
        self._closed = True
        await asyncio.to_thread(os.close, self._fd)

    async def finalize(self, dest: Path) -> None:
        """fsync, close, rename over ``dest`` atomically, fsync the folder."""
        await self._run(os.fsync, self._fd)
        await self.close()
        await asyncio.to_thread(rename_durably, self.path, dest)

    def _settled(self, future: asyncio.Future[object]) -> None:
        self._pending.discard(future)
        # A caller cancelled meanwhile no longer awaits this call: its error (a full disk)
        # reached the caller that did, or is moot; it must not be logged as "never retrieved".
        if not future.cancelled():
            future.exception()

    async def _await_running_calls(self) -> None:
        """Wait for the calls running now; ``wait`` (unlike ``gather``) never cancels them
        if we are cancelled meanwhile."""
        if self._pending:
            await asyncio.wait(set(self._pending))

    async def _run(self, fn, *args):  # type: ignore[no-untyped-def]
        if self._closed:
            raise RuntimeError(f"{self.path} is closed")
        future = asyncio.ensure_future(asyncio.to_thread(fn, *args))
        self._pending.add(future)
        future.add_done_callback(self._settled)
        return await asyncio.shield(future)


def _allocate(fd: int, size: int, reserve: bool) -> None:
    """Size the file; with ``reserve``, claim its blocks too, so that a full disk is found
    now and not mid-download."""
    if os.fstat(fd).st_size >= size:
        return
    if reserve and _libc is not None and size > 0:
        if _libc.fallocate(fd, 0, ctypes.c_int64(0), ctypes.c_int64(size)) == 0:
            return
        code = ctypes.get_errno()
        if code not in (errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
            raise OSError(code, os.strerror(code))
    # No fallocate here (macOS, some network filesystems): a sparse file of the right size.
    os.ftruncate(fd, size)


def _disk_error(path: Path, error: OSError, size: int | None = None) -> Exception:
    if error.errno in (errno.ENOSPC, errno.EDQUOT):
        return DiskFullError(str(path), size)
    return DiskError(str(path), error)


def bad_block_offsets(fd: int, start: int, length: int, block: int, digests: bytes) -> list[int]:
    """Offsets of the blocks in ``[start, start + length)`` of ``fd`` whose XXH3-64 differs
    from ``digests`` (8 bytes per block). Blocking."""
    bad = []
    for i, offset in enumerate(range(start, start + length, block)):
        want = min(block, start + length - offset)
        data = os.pread(fd, want, offset)
        if len(data) != want or xxhash.xxh3_64_digest(data) != digests[i * 8 : i * 8 + 8]:
            bad.append(offset)
    return bad


def file_xxh3(data: bytes | memoryview) -> bytes:
    """XXH3-64 digest of ``data`` as stored in the ledger."""
    return xxhash.xxh3_64_digest(data)
