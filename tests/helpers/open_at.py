"""Child process for the concurrent-open test: at an agreed instant, open (and so migrate)
the ledger named by MODELHAUL_LEDGER, then print the number of its tasks."""

from __future__ import annotations

import asyncio
import os
import sys
import time

from storage import open_ledger


async def main(start_at: float) -> None:
    await asyncio.sleep(max(0.0, start_at - time.time()))
    async with await open_ledger(os.environ["MODELHAUL_LEDGER"]) as ledger:
        print(await ledger.tasks.count(), flush=True)


if __name__ == "__main__":
    asyncio.run(main(float(sys.argv[1])))
