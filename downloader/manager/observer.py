"""Progress as the manager's users watch it: one task's stream, every task's stream, and a
task's progress now, from the runner when this process runs the task, else from the ledger
(another process runs it, or nobody does)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable

from downloader.manager.bus import ProgressBus
from downloader.progress import (
    DownloadProgress,
    DownloadStatus,
    SpeedMeter,
    report,
    status_of,
)
from storage import AT_REST, FileRecord, FileState, Ledger, TaskRecord, TaskState

POLL_SECONDS = 0.5  # how often the ledger is asked about tasks no runner here reports

# A runner of this process that reports a task, if there is one.
LocalProgress = Callable[[int], DownloadProgress | None]


class Observer:
    """Streams of progress over the bus the runners publish on, completed by polling the
    ledger for what no runner here reports."""

    def __init__(self, ledger: Ledger, bus: ProgressBus, local: LocalProgress) -> None:
        self._ledger = ledger
        self._bus = bus
        self._local = local
        self._poller: asyncio.Task[None] | None = None
        self._listeners = 0
        # Speed of tasks other processes run needs their history: one meter per task.
        self._views: dict[int, LedgerView] = {}

    async def progress(self, task_id: int) -> DownloadProgress:
        """The task's progress now."""
        local = self._local(task_id)
        if local is not None:
            return local
        task = await self._ledger.tasks.get(task_id)
        view = self._views.setdefault(task_id, LedgerView())
        return view.of(task, await self._ledger.files.of_task(task_id))

    async def task_stream(self, task_id: int) -> AsyncIterator[DownloadProgress]:
        """Progress of one task until it ends (or pauses)."""
        task = await self._ledger.tasks.get(task_id)
        queue = self._bus.subscribe(task_id)
        view = LedgerView()
        try:
            progress = self._local(task_id) or view.of(
                task, await self._ledger.files.of_task(task_id)
            )
            yield progress
            if progress.status.is_final and task.state in AT_REST:
                return
            while True:
                try:
                    async with asyncio.timeout(POLL_SECONDS):
                        progress = await queue.get()
                except TimeoutError:
                    if self._local(task_id) is not None:
                        continue  # its runner here reports it: nothing to poll
                    task = await self._ledger.tasks.get(task_id)
                    polled = view.of(task, await self._ledger.files.of_task(task_id))
                    if not view.changed(polled):
                        continue
                    progress = polled
                yield progress
                if progress.status.is_final:
                    return
        finally:
            self._bus.unsubscribe(queue)

    async def all_streams(self) -> AsyncIterator[DownloadProgress]:
        """Progress of every task, as it happens: runners here report themselves; what
        changes elsewhere is read from the ledger every half second while anyone listens."""
        queue = self._bus.subscribe(None)
        self._listeners += 1
        if self._poller is None or self._poller.done():
            self._poller = asyncio.create_task(self._poll(), name="modelhaul observer")
        try:
            while True:
                yield await queue.get()
        finally:
            self._bus.unsubscribe(queue)
            self._listeners -= 1
            if self._listeners == 0:
                self.close()

    def close(self) -> None:
        """Stop polling the ledger."""
        if self._poller is not None:
            self._poller.cancel()
            self._poller = None

    async def _poll(self) -> None:
        views: dict[int, LedgerView] = {}
        since = time.time()
        while True:
            await asyncio.sleep(POLL_SECONDS)
            for task in await self._ledger.tasks.changed_since(since - 1.0):
                since = max(since, task.updated_at)
                if self._local(task.id) is not None:
                    continue  # its runner reports it, better than the ledger can
                view = views.setdefault(task.id, LedgerView())
                progress = view.of(task, await self._ledger.files.of_task(task.id))
                if view.changed(progress):
                    self._bus.publish(progress)


class LedgerView:
    """Progress of a task from what its checkpoints record (no runner of ours reports it)."""

    def __init__(self) -> None:
        self._speed = SpeedMeter(window=10)
        self._last: tuple[object, ...] | None = None

    def of(self, task: TaskRecord, files: list[FileRecord]) -> DownloadProgress:
        """The task's progress as its ledger rows tell it."""
        self._speed.add(task.downloaded_bytes)
        speed = self._speed.rate() if task.state is TaskState.DOWNLOADING else 0.0
        message = {
            TaskState.PENDING: f"Queued: {task.label}",
            TaskState.DOWNLOADING: f"Downloading {task.label}",
            TaskState.PAUSED: "Paused; resume to continue from here",
            TaskState.COMPLETED: f"Downloaded {task.label} to {task.destination}",
            TaskState.FAILED: task.error or "failed",
            TaskState.CANCELLED: "Cancelled",
        }[task.state]
        current = next((f.relpath for f in files if f.state is FileState.DOWNLOADING), None)
        status = status_of(task.state)
        if task.state is TaskState.DOWNLOADING and not files:
            # Claimed, its source not yet resolved: starting, as its runner will say too
            # (this view may be read in the moment before that runner reports).
            status, message = DownloadStatus.STARTING, f"Starting {task.label}"
        return report(
            status,
            message,
            done=task.downloaded_bytes,
            total=task.total_bytes,
            speed=speed,
            current_file=current,
            files_completed=task.files_done,
            total_files=task.files_total,
            task_id=task.id,
            state=task.state,
        )

    def changed(self, progress: DownloadProgress) -> bool:
        """Whether ``progress`` says something the last one did not."""
        key = (progress.state, progress.downloaded_bytes, progress.files_completed)
        if key == self._last:
            return False
        self._last = key
        return True
