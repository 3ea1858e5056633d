"""In-process fan-out of progress: every subscriber gets its own bounded queue."""

from __future__ import annotations

import asyncio
import contextlib

from downloader.progress import DownloadProgress

QUEUE_SIZE = 256


class ProgressBus:
    """Publishes ``DownloadProgress`` to subscribers of one task or of all tasks.

    A slow subscriber never slows a download: when its queue is full its oldest report is
    dropped, since a newer report of the same task supersedes it.
    """

    def __init__(self) -> None:
        self._subscribers: dict[asyncio.Queue[DownloadProgress], int | None] = {}

    def subscribe(self, task_id: int | None = None) -> asyncio.Queue[DownloadProgress]:
        """A queue receiving reports of ``task_id`` (None: every task)."""
        queue: asyncio.Queue[DownloadProgress] = asyncio.Queue(QUEUE_SIZE)
        self._subscribers[queue] = task_id
        return queue

    def unsubscribe(self, queue: asyncio.Queue[DownloadProgress]) -> None:
        """Stop delivering to ``queue``."""
        self._subscribers.pop(queue, None)

    def publish(self, progress: DownloadProgress) -> None:
        """Deliver ``progress`` to every interested subscriber."""
        for queue, wanted in list(self._subscribers.items()):
            if wanted is not None and wanted != progress.task_id:
                continue
            if queue.full():
                with contextlib.suppress(asyncio.QueueEmpty):
                    queue.get_nowait()
            queue.put_nowait(progress)

    @property
    def subscribers(self) -> int:
        """How many queues are subscribed (tests check that none leak)."""
        return len(self._subscribers)
