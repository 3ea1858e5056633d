"""Checkpoints: sync the data, then journal it, every few MiB or every second per file.

Order matters: the chunk states are read before ``fdatasync`` starts, so every byte they
describe was written before the sync and is on disk when the journal says so. After any crash
the journal (the ledger) can only under-report.
"""

from __future__ import annotations

import asyncio

from downloader.engine.journal import FileJournal
from downloader.engine.partfile import PartFile
from downloader.engine.plan import Plan
from downloader.engine.timing import wait_a_while


class Checkpointer:
    """Records one file's durable progress in the background while its workers run."""

    def __init__(
        self,
        journal: FileJournal,
        file_id: int,
        part: PartFile,
        plan: Plan,
        *,
        seconds: float,
        nbytes: int,
    ) -> None:
        self._journal = journal  # refuses the writes once the task's lease is lost
        self._file_id = file_id
        self._part = part
        self._plan = plan
        self._seconds = seconds
        self._nbytes = nbytes
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
            await self._journal.checkpoint(records, written, stat.mtime_ns, stat.size)
            self.durable = written
            self.count += 1

    async def _loop(self) -> None:
        while True:
            await wait_a_while(self._due, self._seconds)
            if self._plan.written != self.durable:
                await self.checkpoint()
