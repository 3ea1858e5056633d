"""Child process for the crash test: writes batches to the ledger until it is killed.

Batch n, in one transaction each: enqueue 500 tasks labelled "batch-n"; then, in a second
transaction, set all 64 chunks of one file to done = n. Prints "n" after both commits.
"""

from __future__ import annotations

import asyncio
import sys

from storage import ChunkRecord, FileCheckpoint, NewTask, open_ledger


async def main(path: str, file_id: int, first: int) -> None:
    async with await open_ledger(path) as ledger:
        n = first
        while True:
            await ledger.tasks.enqueue(
                [NewTask("url", f"http://e/{n}/{i}", "/d", label=f"batch-{n}") for i in range(500)]
            )
            chunks = tuple(ChunkRecord(file_id, i * 1000, (i + 1) * 1000, n) for i in range(64))
            await ledger.files.checkpoint([FileCheckpoint(file_id, chunks, 64 * n)])
            print(n, flush=True)
            n += 1


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3])))
