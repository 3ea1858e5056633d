"""``DownloadManager``: the one object users program against, a small facade over its
collaborators, each with one job, depending one way::

    DownloadManager ─► Intake     requests become tasks (or find the one standing)
                    ─► Scheduler  claims tasks, runs a TaskRunner each, watches the ledger
                    ─► Observer   progress: a task's stream, every task's, now
                    ─► Leases     who holds what; requeues and take-overs
                    ─► LiveLimits the bandwidth limit the ledger holds, in the buckets

Control calls (pause, resume, cancel, retry) are ledger transitions: they work alike on
tasks run by any process, which notices within ``settings.watch_seconds`` and stops them.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import AsyncIterator, Collection, Iterable, Mapping
from typing import Any

from downloader.engine.context import EngineContext
from downloader.engine.http import open_session
from downloader.engine.ratelimit import TokenBucket
from downloader.headers import split_credentials
from downloader.limits import Limits, Schedule
from downloader.manager.bus import ProgressBus
from downloader.manager.limits import Clock, local_clock
from downloader.manager.parts import Parts
from downloader.manager.repair import repair_file
from downloader.manager.runner import RunContext
from downloader.manager.taskview import FileView
from downloader.manager.tunables import retuned
from downloader.progress import DownloadProgress, DownloadStatus
from downloader.settings import Settings
from downloader.sources import Resolution
from downloader.specs import Spec
from storage import (
    RESUMABLE,
    UNDERWAY,
    ChunkRecord,
    EventRecord,
    FileRecord,
    IllegalTransitionError,
    Lease,
    Ledger,
    TaskNotFoundError,
    TaskRecord,
    TaskState,
    TransitionConflictError,
    open_ledger,
)
from storage.states import states_of

log = logging.getLogger(__name__)

Task = TaskRecord
States = TaskState | str | Iterable[TaskState | str] | None


class DownloadManager:
    """Queue, run and control downloads over one ledger.

    ``async with DownloadManager() as m:`` opens the ledger (``settings.ledger_target``).
    Tasks added or resumed through a manager are run by it (unless ``autostart=False``, for
    a process that only controls); ``run()`` / ``serve_forever()`` make it a worker that
    drains the whole queue.
    """

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        autostart: bool = True,
        clock: Clock | None = None,
    ) -> None:
        self.settings = settings or Settings.from_env()
        self.autostart = autostart
        self.clock = clock or local_clock()  # a schedule's local time (tests move it)
        self.bus = ProgressBus()
        self._parts: Parts | None = None

    # --- lifecycle --------------------------------------------------------------------------

    async def __aenter__(self) -> DownloadManager:
        ledger = await open_ledger(self.settings.ledger_target)
        config = self.settings.engine()
        engine = EngineContext(open_session(config), config, TokenBucket(config.rate_limit))
        self._parts = Parts(ledger, RunContext(ledger, self.settings, engine), self.bus, self.clock)
        if self.autostart:
            self._parts.scheduler.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Stop running tasks (back to the queue, to go on from their chunks); release all."""
        parts = self._parts
        if parts is None:
            return
        self._parts = None
        await parts.close()

    @property
    def ledger(self) -> Ledger:
        """The open ledger."""
        return self._open.ledger

    @property
    def lease(self) -> Lease:
        """The lease this manager's runs are held under."""
        return self._open.leases.lease

    @property
    def _open(self) -> Parts:
        if self._parts is None:
            raise RuntimeError("use the manager inside 'async with DownloadManager() as m'")
        return self._parts

    # --- adding -----------------------------------------------------------------------------

    async def add(
        self,
        spec: str | Spec,
        *,
        dest: str | os.PathLike[str] | None = None,
        priority: int = 0,
        connections: int | None = None,
        token: str | None = None,
        headers: Mapping[str, str] | None = None,
        paused: bool = False,
        resolution: Resolution | None = None,
        **options: Any,
    ) -> Task:
        """Queue a download; returns its task (the same spec and destination again: the task
        standing for it, resumed). ``resolution``: what ``validate`` found for this very spec,
        so its next run does not ask the source again. ``token`` and credential ``headers``
        stay in this manager's memory (sent to each file's own host only); other headers and
        tunables (``rate_limit``, ``max_tries``, ``timeout``, ``connect_timeout``) are kept
        with the task, honoured by whichever process runs it."""
        [task] = await self._add(
            [spec], dest, priority, connections, token, headers, paused, resolution, options
        )
        return task

    async def add_many(
        self,
        specs: Iterable[str | Spec | Mapping[str, Any]],
        *,
        dest: str | os.PathLike[str] | None = None,
        priority: int = 0,
        connections: int | None = None,
        token: str | None = None,
        headers: Mapping[str, str] | None = None,
        paused: bool = False,
        **options: Any,
    ) -> list[Task]:
        """Queue many downloads in one ledger transaction. Each item is a spec string, a
        ``Spec``, or a mapping with ``spec`` and per-item ``dest``/``priority``/options."""
        return await self._add(
            specs, dest, priority, connections, token, headers, paused, None, options
        )

    async def _add(
        self,
        specs: Iterable[str | Spec | Mapping[str, Any]],
        dest: str | os.PathLike[str] | None,
        priority: int,
        connections: int | None,
        token: str | None,
        headers: Mapping[str, str] | None,
        paused: bool,
        resolution: Resolution | None,
        options: Mapping[str, Any],
    ) -> list[Task]:
        parts = self._open
        credentials, stored = split_credentials(headers or {})
        if stored:
            options = {**options, "extra_headers": stored}
        tasks = await parts.intake.add_many(
            specs,
            dest=dest,
            priority=priority,
            connections=connections,
            paused=paused,
            options=options,
        )
        for task in tasks:
            pending = task.state is TaskState.PENDING
            parts.scheduler.remember(
                task.id,
                token=token,
                credentials=credentials,
                resolution=resolution if pending else None,
            )
            if pending:
                self._adopt(task.id)
        return tasks

    def _adopt(self, task_id: int) -> None:
        """Run ``task_id`` here once it is pending."""
        scheduler = self._open.scheduler
        scheduler.adopt(task_id)
        if self.autostart:
            scheduler.start()

    # --- reading ----------------------------------------------------------------------------

    async def get(self, task_id: int) -> Task:
        """One task (``TaskNotFoundError`` if there is none)."""
        return await self.ledger.tasks.get(task_id)

    async def list(
        self, state: States = None, *, limit: int | None = None, offset: int = 0
    ) -> list[Task]:
        """Tasks, newest first, optionally in some states."""
        return await self.ledger.tasks.list(states_of(state), limit=limit, offset=offset)

    async def count(self, state: States = None) -> int:
        """How many tasks there are (in some states)."""
        return await self.ledger.tasks.count(states_of(state))

    async def files(self, task_id: int) -> list[FileRecord]:
        """The task's files."""
        await self.ledger.tasks.get(task_id)
        return await self.ledger.files.of_task(task_id)

    async def chunks(self, task_id: int) -> dict[int, list[ChunkRecord]]:
        """Each file's chunks (by file id) as the last checkpoint recorded them."""
        return {f.id: await self.ledger.files.chunks(f.id) for f in await self.files(task_id)}

    async def history(self, task_id: int) -> list[EventRecord]:
        """The task's events (its state changes and notes), oldest first."""
        await self.ledger.tasks.get(task_id)
        return await self.ledger.tasks.events(task_id)

    # --- control ----------------------------------------------------------------------------

    async def pause(self, task_id: int) -> Task:
        """Pause a pending or running task, wherever it runs; its progress is kept."""
        task = await self._transition(task_id, TaskState.PAUSED, "paused")
        await self._open.scheduler.stop(task_id, TaskState.PAUSED)
        return task

    async def resume(self, task_id: int, **options: Any) -> Task:
        """Queue a paused (or failed) task again; it continues from its recorded chunks. A
        task in any other state, a running one above all, is left as it is
        (``IllegalTransitionError``). ``options``: new tunables for its next runs
        (``rate_limit=``, ``connections=``, …)."""
        return await self._requeue_stopped(task_id, "resumed", options)

    async def retry(self, task_id: int, **options: Any) -> Task:
        """Queue a failed (or paused) task again, like ``resume``."""
        return await self._requeue_stopped(task_id, "retried", options)

    async def _requeue_stopped(self, task_id: int, reason: str, options: Mapping[str, Any]) -> Task:
        current = await self.ledger.tasks.get(task_id)
        if current.state not in RESUMABLE:
            raise IllegalTransitionError(task_id, current.state, TaskState.PENDING)
        if options:
            await self.ledger.tasks.set_options(task_id, retuned(current.options, options))
        await self._open.leases.await_last_checkpoint(current)
        # Only from the state just read: a task that started meanwhile is not interrupted.
        task = await self._transition(task_id, TaskState.PENDING, reason, current.state)
        self._adopt(task_id)
        return task

    async def cancel(self, task_id: int, *, purge: bool = False) -> Task:
        """Cancel for good (a cancelled task cannot be resumed). ``purge`` deletes its partial
        files; the process running it (this one or another) deletes them once it stops."""
        before = await self.ledger.tasks.get(task_id)
        task = await self.ledger.tasks.transition(
            task_id,
            TaskState.CANCELLED,
            reason="cancelled and purged" if purge else "cancelled",
            actor=self.lease.owner,
            # In the same transaction, so the runner that notices the cancel sees the purge.
            options={**before.options, "purge": True} if purge else None,
        )
        ran_here = await self._open.scheduler.stop(task_id, TaskState.CANCELLED)
        if purge and not ran_here:  # else its runner purged as it stopped
            await self._open.leases.purge_unless_held(before)
        return task

    async def remove(self, task_id: int) -> None:
        """Forget a task (cancelling it first if it is not finished); its files stay."""
        task = await self.ledger.tasks.get(task_id)
        if task.state in UNDERWAY:
            await self.cancel(task_id)
        await self.ledger.tasks.remove(task_id)
        self._open.scheduler.forget(task_id)

    async def repair(
        self, task_id: int, file_id: int, bad_blocks: Collection[int] = (), token: str | None = None
    ) -> FileRecord:
        """Fetch the ``bad_blocks`` (offsets ``verify`` found) of a finished file again, or
        the whole file when none are named, and check it again; the task stays completed."""
        return await repair_file(self._open.ctx, task_id, file_id, bad_blocks, token)

    async def release(self, task_id: int) -> None:
        """The caller that asked for this task no longer listens: pause it if this manager
        is the one running it (another manager or process that carries it on is left be)."""
        with contextlib.suppress(TransitionConflictError, TaskNotFoundError):
            await self.ledger.tasks.transition(
                task_id,
                TaskState.PAUSED,
                reason="paused: its caller stopped listening",
                expect=TaskState.DOWNLOADING,
                if_owner=self.lease.owner,
                actor=self.lease.owner,
            )
            await self._open.scheduler.stop(task_id, TaskState.PAUSED)
        self._open.scheduler.forget(task_id)

    async def _transition(
        self, task_id: int, to: TaskState, reason: str, expect: TaskState | None = None
    ) -> Task:
        """A move by this manager; with ``expect``, only from that state (a compare-and-set:
        a task that moved meanwhile raises ``TransitionConflictError``)."""
        return await self.ledger.tasks.transition(
            task_id, to, reason=reason, expect=expect, actor=self.lease.owner
        )

    # --- bandwidth limit --------------------------------------------------------------------

    async def set_limit(self, rate: int | str | None, *, task_id: int | None = None) -> Limits:
        """Limit all downloads (or task ``task_id``) to ``rate`` bytes/s (``"8M"``, 1K or more;
        None/``"off"``: none), live in every process; a global rate replaces a schedule."""
        return await self._open.limits.set_limit(rate, task_id)

    async def set_schedule(self, schedule: str | Schedule | None) -> Limits:
        """The global limit by local time, ``"08:00-18:00=2M,18:00-08:00=off"`` (None: none)."""
        return await self._open.limits.set_schedule(schedule)

    async def get_limits(self) -> Limits:
        """The global limit (rate or schedule), what holds now, tasks' own limits."""
        return await self._open.limits.view()

    # --- waiting and watching ---------------------------------------------------------------

    async def wait(self, task_id: int) -> Task:
        """Until the task is completed, failed, cancelled or paused; returns it. (Bound the
        wait with ``asyncio.timeout`` around the call.)"""
        async for progress in self.subscribe(task_id):
            if progress.status.is_final:
                break
        scheduler = self._open.scheduler
        await scheduler.ended(task_id)  # its runner published its last word: let it end
        if task_id in scheduler.unrecorded:
            # It ended here but the ledger could not be told: the ledger's word would be
            # stale ("downloading"), so the reason is raised instead.
            raise scheduler.unrecorded[task_id]
        return await self.ledger.tasks.get(task_id)

    def subscribe(self, task_id: int) -> AsyncIterator[DownloadProgress]:
        """Progress of one task until it ends (or pauses). Reports come from this process's
        runner when it runs the task, else from the ledger (another process runs it)."""
        return self._open.observer.task_stream(task_id)

    def watch(self) -> AsyncIterator[DownloadProgress]:
        """Progress of every task, as it happens (for dashboards): tasks this process runs
        report themselves; tasks other processes run (or that change state there) are
        reported from the ledger, polled every half second while anyone listens."""
        return self._open.observer.all_streams()

    events = watch  # its name before 0.2; ``history()`` holds a task's recorded events

    async def progress(self, task_id: int) -> DownloadProgress:
        """The task's progress now (from its runner here, else from the ledger)."""
        return await self._open.observer.progress(task_id)

    def file_views(self, task_id: int) -> list[FileView]:
        """Per-file progress of a task this process runs (empty otherwise)."""
        return self._open.scheduler.file_views(task_id)

    # --- running ----------------------------------------------------------------------------

    async def run(self, *, once: bool = False) -> None:
        """Work as a queue worker: run every pending task (``max_tasks`` at a time). With
        ``once``, return when nothing is pending or running any more."""
        await self._open.scheduler.drain(once=once)

    async def serve_forever(self) -> None:
        """``run()`` until cancelled."""
        await self.run(once=False)


__all__ = ["DownloadManager", "DownloadStatus", "Task"]
