"""Child process for the claim race on PostgreSQL: at an agreed instant, claim pending tasks
one at a time until none is left; print the ids it won as one JSON list."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time

from storage import Lease, open_ledger


async def main(target: str, start_at: float) -> None:
    lease = Lease(host="claimer", pid=os.getpid(), started=time.time())
    won: list[int] = []
    async with await open_ledger(target) as ledger:
        await ledger.tasks.count()  # connected before the start
        await asyncio.sleep(max(0.0, start_at - time.time()))
        while claimed := await ledger.tasks.claim(lease, 1, reason="race"):
            won.extend(t.id for t in claimed)
    print(json.dumps({"owner": lease.owner, "won": won}), flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], float(sys.argv[2])))
