"""Another process that only controls: pause, resume or cancel a task by id.

    python control.py pause|resume|cancel|cancel-purge TASK_ID

Prints the task's state afterwards.
"""

from __future__ import annotations

import asyncio
import sys

from downloader import DownloadManager


async def main(action: str, task_id: int) -> None:
    async with DownloadManager(autostart=False) as manager:
        if action == "cancel-purge":
            task = await manager.cancel(task_id, purge=True)
        else:
            task = await getattr(manager, action)(task_id)
        print(task.state.value, flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2])))
