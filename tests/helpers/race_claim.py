"""Child process for the claim race: at agreed instants, try to take task N of a shared list.

Prints one JSON line per round: {"task": id, "won": bool, "error": message or null}.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sys
import time

from storage import Lease, TaskState, TransitionConflictError, open_ledger


async def main(path: str, start_at: float, interval: float, task_ids: list[int]) -> None:
    lease = Lease(host=socket.gethostname(), pid=os.getpid(), started=time.time())
    async with await open_ledger(path) as ledger:
        for i, task_id in enumerate(task_ids):
            await asyncio.sleep(max(0.0, start_at + i * interval - time.time()))
            try:
                await ledger.tasks.transition(
                    task_id,
                    TaskState.DOWNLOADING,
                    reason="race",
                    expect=TaskState.PENDING,
                    lease=lease,
                    actor=lease.owner,
                )
                line = {"task": task_id, "won": True, "error": None, "owner": lease.owner}
            except TransitionConflictError as e:
                line = {"task": task_id, "won": False, "error": str(e), "owner": lease.owner}
            print(json.dumps(line), flush=True)


if __name__ == "__main__":
    ids = [int(x) for x in sys.argv[4].split(",")]
    asyncio.run(main(sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), ids))
