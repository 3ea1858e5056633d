"""A worker process: drain the queue of the ledger in $MODELHAUL_HOME until killed.

    python worker.py [MAX_TASKS]

Prints "ready" once its manager is running.
"""

from __future__ import annotations

import asyncio
import sys

from downloader import DownloadManager, Settings


async def main(max_tasks: int) -> None:
    async with DownloadManager(Settings.from_env(max_tasks=max_tasks)) as manager:
        print("ready", flush=True)
        await manager.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 4))
