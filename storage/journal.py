"""The journal of one file, kept in the ledger: what the download engine is handed instead
of the whole ledger.

Every write goes to that one file's rows and is fenced on the lease it runs under (``owner``):
once another process holds the task, the write is refused with ``LeaseLostError``. Notes go
to the task's history under the same name.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from storage.files import FileStore
from storage.records import ChunkRecord, FileCheckpoint, FileRecord
from storage.tasks import TaskStore


class LedgerJournal:
    """One file's rows in the ledger, written under one lease (``owner``; None: unfenced,
    for a download no task runner owns)."""

    def __init__(
        self,
        files: FileStore,
        tasks: TaskStore,
        file_id: int,
        task_id: int,
        owner: str | None = None,
    ) -> None:
        self._files = files
        self._tasks = tasks
        self.file_id = file_id
        self.task_id = task_id
        self.owner = owner

    async def chunks(self) -> list[ChunkRecord]:
        """The file's chunks in byte order."""
        return await self._files.chunks(self.file_id)

    async def update(self, **fields: Any) -> FileRecord:
        """Set file columns (and the task's totals) while the lease holds."""
        return await self._files.update(self.file_id, owner=self.owner, **fields)

    async def replace_chunks(self, chunks: Sequence[ChunkRecord], **fields: Any) -> FileRecord:
        """A new chunk plan and file columns in one transaction, while the lease holds."""
        return await self._files.replace_chunks(self.file_id, chunks, owner=self.owner, **fields)

    async def checkpoint(
        self, chunks: Sequence[ChunkRecord], written: int, part_mtime_ns: int, part_size: int
    ) -> None:
        """Every chunk's durable bytes in one transaction, while the lease holds."""
        batch = [FileCheckpoint(self.file_id, tuple(chunks), written, part_mtime_ns, part_size)]
        await self._files.checkpoint(batch, owner=self.owner)

    async def note(self, reason: str) -> None:
        """An event in the task's history, by ``owner``."""
        await self._tasks.note(self.task_id, reason, actor=self.owner)
