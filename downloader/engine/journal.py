"""Where a download writes down what it learns and how far it got: the journal of one file.

The engine is handed a journal bound to ONE file and to the lease its task runs under, never
the ledger itself: it can touch no other file's rows, and once the lease is lost every write
is refused (``LeaseLostError``). ``storage.LedgerJournal`` keeps it in the ledger.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from storage import ChunkRecord, FileRecord


class FileJournal(Protocol):
    """One file's durable record, as its download reads and writes it."""

    async def chunks(self) -> list[ChunkRecord]:
        """The file's recorded chunks in byte order (empty before a plan is made)."""
        ...

    async def update(self, **fields: Any) -> FileRecord:
        """Set columns of the file (probe results, state, digests, the dirty flag); returns
        the record as it now stands."""
        ...

    async def replace_chunks(self, chunks: Sequence[ChunkRecord], **fields: Any) -> FileRecord:
        """Throw the recorded chunks away for ``chunks`` (a new plan, repaired blocks, a
        start over), setting ``fields`` in the same transaction; returns the new record."""
        ...

    async def checkpoint(
        self, chunks: Sequence[ChunkRecord], written: int, part_mtime_ns: int, part_size: int
    ) -> None:
        """Record the durable bytes of every chunk (``written`` in all) and what the
        ``.part`` looked like when they were synced. The caller synced them first: the
        journal may lag the disk, never lead it."""
        ...

    async def note(self, reason: str) -> None:
        """Write ``reason`` into the history of the file's task (the remote file changed,
        blocks were fetched again, …) without changing its state."""
        ...
