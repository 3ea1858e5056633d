"""Checkpoints: sync the data, then record it, every few MiB or every second per file.

Order matters: the chunk states are read before ``fdatasync`` starts, so every byte they
describe was written before the sync and is on disk when the ledger says so. After any crash
the ledger can only under-report.
"""

from __future__ import annotations

import asyncio

from downloader.engine.partfile import PartFile
from downloader.engine.plan import Plan
from downloader.engine.timing import wait_a_while
from storage import FileCheckpoint, FileStore


class Checkpointer:
    """Records one file's durable progress in the background while its workers run."""

    def __init__(
        self,
        files: FileStore,
        file_id: int,
        part: PartFile,
        plan: Plan,
        *,
        seconds: float,
        nbytes: int,
        owner: str | None = None,
    ) -> None:
        self._files = files
        self._file_id = file_id
        self._part = part
        self._plan = plan
        self._seconds = seconds
        self._nbytes = nbytes
        self._owner = owner  # the lease this runs under: writes are refused once it is lost
        self._since = 0
        self._due = asyncio.Event()
        self._lock = asyncio.Lock()
        self.durable = plan.written
        self.count = 0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> asyncio.Task[None]:
        """Run periodic checkpoints until ``stop``; the task ends only by failing (a lost
        lease, a disk error), which its caller watches for."""
        self._task = asyncio.create_task(self._loop(), name=f"checkpoint file {self._file_id}")
        return self._task

    def wrote(self, nbytes: int) -> None:
        """Count written bytes; enough of them make a checkpoint due now."""
        self._since += nbytes
        if self._since >= self._nbytes:
            self._due.set()

    async def stop(self) -> None:
        """End the periodic loop (the caller makes the final checkpoint itself)."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def checkpoint(self) -> None:
        """Sync the ``.part`` and record every chunk's written bytes as durable."""
        async with self._lock:
            records = self._plan.records(self._file_id)
            written = sum(r.done for r in records)
            self._since = 0
            self._due.clear()
            stat = await self._part.sync()
            await self._files.checkpoint(
                [FileCheckpoint(self._file_id, records, written, stat.mtime_ns, stat.size)],
                owner=self._owner,
            )
            self.durable = written
            self.count += 1

    async def _loop(self) -> None:
        while True:
            await wait_a_while(self._due, self._seconds)
            if self._plan.written != self.durable:
                await self.checkpoint()
