"""``DownloadManager``: the one object users program against.

It owns a ledger connection, one HTTP session, this process's lease and the runners of the
tasks it runs. Control calls (pause, resume, cancel, retry) are ledger transitions, so they
work the same on a task run by this process or by any other one; a running process notices
within ``settings.watch_seconds`` and stops its connections.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import secrets
import time
from collections.abc import AsyncIterator, Iterable, Mapping
from pathlib import Path
from typing import Any

from downloader.engine.context import EngineContext
from downloader.engine.http import open_session
from downloader.engine.ratelimit import TokenBucket
from downloader.engine.timing import wait_a_while
from downloader.errors import SpecError
from downloader.manager.bus import ProgressBus
from downloader.manager.lease import owner_gone, pid_alive, process_gone, this_process
from downloader.manager.runner import FileView, RunContext, TaskRunner, purge_parts, status_of
from downloader.paths import check_writable
from downloader.progress import (
    DownloadProgress,
    DownloadStatus,
    SpeedMeter,
    format_eta,
    format_speed,
)
from downloader.settings import Settings
from downloader.sources import Resolution, source_for
from downloader.specs import Spec, parse_spec
from storage import (
    ChunkRecord,
    EventRecord,
    FileRecord,
    IllegalTransitionError,
    Lease,
    Ledger,
    LedgerUnavailableError,
    NewTask,
    TaskNotFoundError,
    TaskRecord,
    TaskState,
    TransitionConflictError,
    open_ledger,
)

log = logging.getLogger(__name__)

Task = TaskRecord
ACTIVE = (TaskState.PENDING, TaskState.DOWNLOADING, TaskState.PAUSED, TaskState.FAILED)
RUN_OPTIONS = ("connections", "overwrite")  # options a repeated request may change
SETTLED = frozenset({TaskState.COMPLETED, TaskState.FAILED, TaskState.CANCELLED, TaskState.PAUSED})


class DownloadManager:
    """Queue, run and control downloads over one ledger.

    ``async with DownloadManager() as m:`` opens the ledger (``settings.ledger_target``).
    Tasks added or resumed through a manager are run by it (unless ``autostart=False``, for
    a process that only controls); ``run()`` / ``serve_forever()`` make it a worker that
    drains the whole queue.
    """

    def __init__(self, settings: Settings | None = None, *, autostart: bool = True) -> None:
        self.settings = settings or Settings.from_env()
        self.autostart = autostart
        self.bus = ProgressBus()
        # One process may run several managers: each holds its own leases.
        self.lease = dataclasses.replace(this_process(), instance=secrets.token_hex(4))
        self._ledger: Ledger | None = None
        self._ctx: RunContext | None = None
        self._runners: dict[int, tuple[TaskRunner, asyncio.Task[None]]] = {}
        self._mine: set[int] = set()  # tasks this manager runs when not draining the queue
        self._drain = False
        self._tokens: dict[int, str] = {}  # in memory only: never written anywhere
        self._resolutions: dict[int, Resolution] = {}  # a preflight's answers, for one run
        self._wake = asyncio.Event()
        self._loops: list[asyncio.Task[None]] = []
        self._observer: asyncio.Task[None] | None = None
        self._listeners = 0
        # Speed of tasks other processes run needs their history: one meter per task asked
        # about through progress().
        self._polled: dict[int, _LedgerProgress] = {}
        # Tasks whose runner ended here without being able to write how (a full disk).
        self._unrecorded: dict[int, LedgerUnavailableError] = {}

    # --- lifecycle --------------------------------------------------------------------------

    async def __aenter__(self) -> DownloadManager:
        self._ledger = await open_ledger(self.settings.ledger_target)
        config = self.settings.engine()
        engine = EngineContext(open_session(config), config, TokenBucket(config.rate_limit))
        self._ctx = RunContext(self._ledger, self.settings, engine)
        if self.autostart:
            self._start_loops()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Stop running tasks (they go back to the queue, to continue from their chunks),
        then release everything."""
        if self._observer is not None:
            self._observer.cancel()
        for loop in self._loops:
            loop.cancel()
        await asyncio.gather(*self._loops, return_exceptions=True)
        self._loops.clear()
        await self._stop_runners(list(self._runners))
        try:
            if self._ledger is not None:
                # A claim made as the scheduler was being cancelled has no runner: queue it
                # again now rather than leave it leased to a manager that is gone.
                for task in await self._ledger.tasks.leased():
                    if task.lease is not None and task.lease.owner == self.lease.owner:
                        await self._requeue(task, "claimed as its manager closed")
        except LedgerUnavailableError as e:
            # Nothing more can be recorded; our leases lapse with this process.
            log.info("closing without requeueing: %s", e)
        finally:
            if self._ctx is not None:
                await self._ctx.session.close()
            if self._ledger is not None:
                await self._ledger.close()

    @property
    def ledger(self) -> Ledger:
        """The open ledger."""
        if self._ledger is None:
            raise RuntimeError("use the manager inside 'async with DownloadManager() as m'")
        return self._ledger

    def _start_loops(self) -> None:
        if not self._loops:
            self._loops = [
                asyncio.create_task(self._schedule(), name="modelhaul scheduler"),
                asyncio.create_task(self._watch(), name="modelhaul watch"),
            ]

    # --- adding -----------------------------------------------------------------------------

    async def add(
        self,
        spec: str | Spec,
        *,
        dest: str | os.PathLike[str] | None = None,
        priority: int = 0,
        connections: int | None = None,
        token: str | None = None,
        paused: bool = False,
        resolution: Resolution | None = None,
        **options: Any,
    ) -> Task:
        """Queue a download; returns its task. The same spec and destination again returns
        the existing task (resuming it if it was paused or failed) instead of starting over.
        ``resolution``: what ``estimate_download_size``/``validate`` found for this very spec
        and destination, so that its next run does not ask the source again."""
        [task] = await self.add_many(
            [spec],
            dest=dest,
            priority=priority,
            connections=connections,
            token=token,
            paused=paused,
            **options,
        )
        if resolution is not None and task.state is TaskState.PENDING:
            self._resolutions[task.id] = resolution
        return task

    async def add_many(
        self,
        specs: Iterable[str | Spec | Mapping[str, Any]],
        *,
        dest: str | os.PathLike[str] | None = None,
        priority: int = 0,
        connections: int | None = None,
        token: str | None = None,
        paused: bool = False,
        **options: Any,
    ) -> list[Task]:
        """Queue many downloads in one ledger transaction. Each item is a spec string, a
        ``Spec``, or a mapping with ``spec`` and per-item ``dest``/``priority``/options."""
        new: list[NewTask] = []
        for item in specs:
            new.append(
                await self._new_task(item, dest, priority, connections, paused, dict(options))
            )
        found: dict[int, Task] = {}
        fresh: list[tuple[int, NewTask]] = []
        for i, task in enumerate(new):
            existing = await self.ledger.tasks.find(task.spec_key, (*ACTIVE, TaskState.COMPLETED))
            if existing is None:
                fresh.append((i, task))
                continue
            if existing.state is TaskState.DOWNLOADING and existing.lease is not None:
                if self._orphaned(existing):
                    # After a kill -9 the next request for the same file takes over at once.
                    await self._requeue(existing, "its process is gone")
                elif existing.lease.same_process(self.lease):
                    # Another manager of this process runs it (an earlier download_model()
                    # whose caller left): the newer request carries it on.
                    await self._take_over(existing)
                existing = await self.ledger.tasks.get(existing.id)
            found[i] = await self._reuse(existing, task, paused)
        ids = await self.ledger.tasks.enqueue([t for _, t in fresh], actor=self.lease.owner)
        for (i, _), task_id in zip(fresh, ids, strict=True):
            found[i] = await self.ledger.tasks.get(task_id)
        tasks = [found[i] for i in range(len(new))]
        for task in tasks:
            if token:
                self._tokens[task.id] = token
            if task.state is TaskState.PENDING:
                self._adopt(task.id)
        return tasks

    async def _new_task(
        self,
        item: str | Spec | Mapping[str, Any],
        dest: str | os.PathLike[str] | None,
        priority: int,
        connections: int | None,
        paused: bool,
        options: dict[str, Any],
    ) -> NewTask:
        if isinstance(item, Mapping):
            fields = dict(item)
            if "spec" not in fields:
                raise SpecError(f"manifest entry {item!r} has no 'spec'")
            spec_item = fields.pop("spec")
            dest = fields.pop("dest", dest)
            priority = int(fields.pop("priority", priority))
            connections = fields.pop("connections", connections)
            options = {**options, **fields}
            item = spec_item
        spec = item if isinstance(item, Spec) else parse_spec(str(item))
        source = source_for(spec.provider)
        path = source.destination(spec, None if dest is None else os.fspath(dest), self.settings)
        await asyncio.to_thread(check_writable, path, folder=source.folder_destination)
        opts = {**spec.options, **options}
        if connections is not None:
            if int(connections) < 1:
                raise SpecError(f"connections must be at least 1, not {connections}")
            opts["connections"] = int(connections)
        return NewTask(
            provider=spec.provider,
            source=spec.source,
            destination=str(path),
            revision=spec.revision,
            patterns=spec.patterns,
            options=opts,
            priority=priority,
            label=spec.label,
            state=TaskState.PAUSED if paused else TaskState.PENDING,
        )

    async def _reuse(self, task: Task, asked: NewTask, paused: bool) -> Task:
        """The same download asked for again: resume it rather than start over."""
        if task.state is TaskState.COMPLETED:
            files = await self.ledger.files.of_task(task.id)
            present = bool(files) and await asyncio.to_thread(
                lambda: all(Path(f.local_path).is_file() for f in files)
            )
            if present:
                return task
            # Its files are gone (or another program holds them): run it again; the engine
            # skips whatever is still in place.
            [task_id] = await self.ledger.tasks.enqueue([asked], actor=self.lease.owner)
            return await self.ledger.tasks.get(task_id)
        # How to run it may change with the new request (more connections, leave to
        # overwrite); what it fetches and where cannot (that is the task's identity).
        wanted = {k: asked.options[k] for k in RUN_OPTIONS if k in asked.options}
        if any(task.options.get(k) != v for k, v in wanted.items()):
            await self.ledger.tasks.set_options(task.id, {**task.options, **wanted})
            task = await self.ledger.tasks.get(task.id)
        if task.state in (TaskState.PAUSED, TaskState.FAILED) and not paused:
            await self._settle(task)
            return await self._transition(task.id, TaskState.PENDING, "asked for again", task.state)
        return task

    # --- control ----------------------------------------------------------------------------

    async def get(self, task_id: int) -> Task:
        """One task (``TaskNotFoundError`` if there is none)."""
        return await self.ledger.tasks.get(task_id)

    async def list(
        self,
        state: TaskState | str | Iterable[TaskState | str] | None = None,
        *,
        limit: int | None = None,
        offset: int = 0,
    ) -> list[Task]:
        """Tasks, newest first, optionally in some states."""
        return await self.ledger.tasks.list(_states(state), limit=limit, offset=offset)

    async def count(self, state: TaskState | str | Iterable[TaskState | str] | None = None) -> int:
        """How many tasks there are (in some states)."""
        return await self.ledger.tasks.count(_states(state))

    async def chunks(self, task_id: int) -> dict[int, list[ChunkRecord]]:
        """Each file's chunks (by file id) as the last checkpoint recorded them."""
        return {f.id: await self.ledger.files.chunks(f.id) for f in await self.files(task_id)}

    async def files(self, task_id: int) -> list[FileRecord]:
        """The task's files."""
        await self.ledger.tasks.get(task_id)
        return await self.ledger.files.of_task(task_id)

    async def history(self, task_id: int) -> list[EventRecord]:
        """The task's events, oldest first."""
        await self.ledger.tasks.get(task_id)
        return await self.ledger.tasks.events(task_id)

    async def pause(self, task_id: int) -> Task:
        """Pause a pending or running task, wherever it runs; its progress is kept."""
        task = await self._transition(task_id, TaskState.PAUSED, "paused")
        await self._stop_local(task_id)
        return task

    async def resume(self, task_id: int) -> Task:
        """Queue a paused (or failed) task again; it continues from its recorded chunks. A
        task in any other state, a running one above all, is left as it is
        (``IllegalTransitionError``)."""
        return await self._requeue_stopped(task_id, "resumed")

    async def retry(self, task_id: int) -> Task:
        """Queue a failed (or paused) task again, like ``resume``."""
        return await self._requeue_stopped(task_id, "retried")

    async def _requeue_stopped(self, task_id: int, reason: str) -> Task:
        current = await self.ledger.tasks.get(task_id)
        if current.state not in (TaskState.PAUSED, TaskState.FAILED):
            raise IllegalTransitionError(task_id, current.state, TaskState.PENDING)
        await self._settle(current)
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
        ran_here = await self._stop_local(task_id)
        held_elsewhere = (
            before.state is TaskState.DOWNLOADING
            and not ran_here
            and before.lease is not None
            and not owner_gone(before, stale_after=self.settings.stale_after)
        )
        if purge and not ran_here and not held_elsewhere:
            await asyncio.to_thread(purge_parts, await self.ledger.files.of_task(task_id))
        return task

    async def remove(self, task_id: int) -> None:
        """Forget a task (cancelling it first if it is not finished); its files stay."""
        task = await self.ledger.tasks.get(task_id)
        if task.state not in (TaskState.COMPLETED, TaskState.CANCELLED, TaskState.FAILED):
            await self.cancel(task_id)
        await self.ledger.tasks.remove(task_id)
        self._mine.discard(task_id)

    async def _transition(
        self, task_id: int, to: TaskState, reason: str, expect: TaskState | None = None
    ) -> Task:
        """A move by this manager; with ``expect``, only from that state (a compare-and-set:
        a task that moved meanwhile raises ``TransitionConflictError``)."""
        return await self.ledger.tasks.transition(
            task_id, to, reason=reason, expect=expect, actor=self.lease.owner
        )

    # --- waiting and watching ---------------------------------------------------------------

    async def wait(self, task_id: int) -> Task:
        """Until the task is completed, failed, cancelled or paused; returns it. (Bound the
        wait with ``asyncio.timeout`` around the call.)"""
        async for progress in self.subscribe(task_id):
            if progress.status.is_final:
                break
        entry = self._runners.get(task_id)
        if entry is not None:  # its runner published its last word and is ending: let it
            await asyncio.gather(asyncio.shield(entry[1]), return_exceptions=True)
        if task_id in self._unrecorded:
            # It ended here but the ledger could not be told: the ledger's word would be
            # stale ("downloading"), so the reason is raised instead.
            raise self._unrecorded[task_id]
        return await self.ledger.tasks.get(task_id)

    async def subscribe(self, task_id: int) -> AsyncIterator[DownloadProgress]:
        """Progress of one task until it ends (or pauses). Reports come from this process's
        runner when it runs the task, else from the ledger (another process runs it)."""
        task = await self.ledger.tasks.get(task_id)
        queue = self.bus.subscribe(task_id)
        poller = _LedgerProgress()
        try:
            progress = self._runner_snapshot(task_id) or poller.of(
                task, await self.ledger.files.of_task(task_id)
            )
            yield progress
            if progress.status.is_final and task.state in SETTLED:
                return
            while True:
                try:
                    async with asyncio.timeout(0.5):
                        progress = await queue.get()
                except TimeoutError:
                    if task_id in self._runners:
                        continue
                    task = await self.ledger.tasks.get(task_id)
                    polled = poller.of(task, await self.ledger.files.of_task(task_id))
                    if not poller.changed(polled):
                        continue
                    progress = polled
                yield progress
                if progress.status.is_final:
                    return
        finally:
            self.bus.unsubscribe(queue)

    async def events(self) -> AsyncIterator[DownloadProgress]:
        """Progress of every task, as it happens (for dashboards): tasks this process runs
        report themselves; tasks other processes run (or that change state there) are
        reported from the ledger, polled every half second while anyone listens."""
        queue = self.bus.subscribe(None)
        self._listeners += 1
        if self._observer is None or self._observer.done():
            self._observer = asyncio.create_task(self._observe(), name="modelhaul observer")
        try:
            while True:
                yield await queue.get()
        finally:
            self.bus.unsubscribe(queue)
            self._listeners -= 1
            if self._listeners == 0 and self._observer is not None:
                self._observer.cancel()
                self._observer = None

    async def _observe(self) -> None:
        polled: dict[int, _LedgerProgress] = {}
        since = time.time()
        while True:
            await asyncio.sleep(0.5)
            changed = await self.ledger.tasks.changed_since(since - 1.0)
            for task in changed:
                since = max(since, task.updated_at)
                if task.id in self._runners:
                    continue  # its runner reports it, better than the ledger can
                poller = polled.setdefault(task.id, _LedgerProgress())
                progress = poller.of(task, await self.ledger.files.of_task(task.id))
                if poller.changed(progress):
                    self.bus.publish(progress)

    async def progress(self, task_id: int) -> DownloadProgress:
        """The task's progress now (from its runner here, else from the ledger)."""
        local = self._runner_snapshot(task_id)
        if local is not None:
            return local
        task = await self.ledger.tasks.get(task_id)
        poller = self._polled.setdefault(task_id, _LedgerProgress())
        return poller.of(task, await self.ledger.files.of_task(task_id))

    def file_views(self, task_id: int) -> list[FileView]:
        """Per-file progress of a task this process runs (empty otherwise)."""
        entry = self._runners.get(task_id)
        return entry[0].file_views() if entry else []

    def _runner_snapshot(self, task_id: int) -> DownloadProgress | None:
        entry = self._runners.get(task_id)
        return entry[0].snapshot() if entry else None

    # --- running ----------------------------------------------------------------------------

    async def run(self, *, once: bool = False) -> None:
        """Work as a queue worker: run every pending task (``max_tasks`` at a time). With
        ``once``, return when nothing is pending or running any more."""
        self._drain = True
        # Before the first look at the queue: what a killed process left behind is queued
        # again, so ``once`` does not find an empty queue and leave it stranded.
        await self._requeue_orphans()
        await self._purge_abandoned()
        self._start_loops()
        self._wake.set()
        if not once:
            await asyncio.Event().wait()
        while True:
            await asyncio.sleep(0.2)
            if self._runners:
                continue
            if await self.ledger.tasks.count([TaskState.PENDING]) == 0 and not self._runners:
                return

    async def serve_forever(self) -> None:
        """``run()`` until cancelled."""
        await self.run(once=False)

    def _adopt(self, task_id: int) -> None:
        self._mine.add(task_id)
        if self.autostart:
            self._start_loops()
        self._wake.set()

    async def _schedule(self) -> None:
        """Claim and start tasks while there is room. A ledger that cannot be written stops
        claims, not the loop: it goes on once the ledger takes writes again."""
        last_requeue = 0.0
        while True:
            try:
                last_requeue = await self._schedule_once(last_requeue)
            except LedgerUnavailableError as e:
                log.info("cannot claim tasks now: %s", e)
            self._wake.clear()
            await wait_a_while(self._wake, 0.5)

    async def _schedule_once(self, last_requeue: float) -> float:
        """Requeue orphans when due, then claim what fits; returns when orphans were last
        requeued."""
        if time.monotonic() - last_requeue > self.settings.heartbeat_seconds:
            await self._requeue_orphans()
            last_requeue = time.monotonic()
        free = self.settings.max_tasks - len(self._runners)
        if free > 0:
            # A claim is a ledger write that completes even if we are cancelled while it
            # runs: let it land, then hand back what it took, so nothing stays leased to
            # a manager that is closing.
            claim = asyncio.ensure_future(self._claim(free))
            try:
                claimed = await asyncio.shield(claim)
            except asyncio.CancelledError:
                for task in await claim:
                    await self._requeue(task, "claimed as its manager closed")
                raise
            for task in claimed:
                self._start_runner(task)
        return last_requeue

    async def _claim(self, free: int) -> list[Task]:
        if self._drain:
            return await self.ledger.tasks.claim(self.lease, free)
        wanted = [i for i in self._mine if i not in self._runners]
        if not wanted:
            return []
        return await self.ledger.tasks.claim(self.lease, free, only=wanted)

    def _start_runner(self, task: Task) -> None:
        assert self._ctx is not None
        runner = TaskRunner(
            task,
            ctx=self._ctx_for(task),
            source=source_for(task.provider),
            lease=self.lease,
            bus=self.bus,
            token=self._tokens.get(task.id),
            resolution=self._resolutions.pop(task.id, None),
        )
        job = asyncio.create_task(runner.run(), name=f"task {task.id}")
        self._runners[task.id] = (runner, job)
        job.add_done_callback(lambda _: self._finished(task.id, runner, job))

    def _ctx_for(self, task: Task) -> RunContext:
        assert self._ctx is not None
        connections = task.options.get("connections")
        if connections is None:
            return self._ctx
        config = self.settings.engine(connections=int(connections))
        engine = EngineContext(self._ctx.engine.session, config, self._ctx.engine.limiter)
        return dataclasses.replace(self._ctx, engine=engine)

    def _finished(self, task_id: int, runner: TaskRunner, job: asyncio.Task[None]) -> None:
        self._runners.pop(task_id, None)
        if runner.unrecorded is not None:
            self._unrecorded[task_id] = runner.unrecorded
        else:
            self._unrecorded.pop(task_id, None)
        if not job.cancelled() and job.exception() is not None:  # a bug: say it, once
            log.error("task %s: its runner failed", task_id, exc_info=job.exception())
        self._wake.set()

    async def _stop_local(self, task_id: int) -> bool:
        """Stop this process's runner of ``task_id`` (another process moved the task)."""
        entry = self._runners.get(task_id)
        if entry is None:
            return False
        runner, job = entry
        runner.external_stop = TaskState.PAUSED
        job.cancel()
        await asyncio.gather(job, return_exceptions=True)
        return True

    async def _stop_runners(self, task_ids: list[int]) -> None:
        jobs = []
        for task_id in task_ids:
            entry = self._runners.get(task_id)
            if entry is not None:
                entry[1].cancel()
                jobs.append(entry[1])
        await asyncio.gather(*jobs, return_exceptions=True)

    async def _watch(self) -> None:
        """Notice pause/cancel written by other processes; keep our leases alive."""
        last_beat = time.monotonic()
        while True:
            await asyncio.sleep(self.settings.watch_seconds)
            running = list(self._runners)
            if not running:
                continue
            states = await self.ledger.tasks.states(running)
            for task_id in running:
                state, owner = states.get(task_id, (None, None))
                if state is not TaskState.DOWNLOADING or owner != self.lease.owner:
                    entry = self._runners.get(task_id)
                    if entry is not None:
                        entry[0].external_stop = state or TaskState.CANCELLED
                        entry[1].cancel()
            if time.monotonic() - last_beat >= self.settings.heartbeat_seconds:
                try:
                    await self.ledger.tasks.heartbeat(self.lease, list(self._runners))
                except LedgerUnavailableError as e:  # the runners meet it too, and stop
                    log.info("cannot renew leases: %s", e)
                last_beat = time.monotonic()

    async def _take_over(self, task: Task, patience: float = 5.0) -> None:
        """Stop the other runner (a pause under its lease), let it make its last checkpoint
        (its files turn clean), then let ``_reuse`` queue the task for us. Past ``patience``
        we go on regardless: fencing refuses its late writes."""
        assert task.lease is not None
        with contextlib.suppress(TransitionConflictError):  # it may be stopping already
            await self.ledger.tasks.transition(
                task.id,
                TaskState.PAUSED,
                reason="taken over by a newer request",
                expect=TaskState.DOWNLOADING,
                if_owner=task.lease.owner,
                actor=self.lease.owner,
            )
        await self._settle(task, patience)

    async def _settle(self, task: Task, patience: float = 5.0) -> None:
        """Before a stopped task runs again: if the process that ran it last is alive, give
        it (up to ``patience``) to write its final checkpoint, which marks its files clean.
        Once another runner claims the task, that checkpoint would be refused."""
        last = Lease.parse(task.last_owner) if task.last_owner else None
        if last is None or (last.host == self.lease.host and not pid_alive(last.pid)):
            return
        deadline = time.monotonic() + patience
        while time.monotonic() < deadline:
            if not any(f.dirty for f in await self.ledger.files.of_task(task.id)):
                return
            await asyncio.sleep(0.05)

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
            await self._stop_local(task_id)
        self._mine.discard(task_id)

    def _orphaned(self, task: Task) -> bool:
        """Downloading under a lease nobody honours: a gone process, or ours without a
        runner (a runner lost to a bug must not wedge the task)."""
        if task.lease is not None and task.lease.owner == self.lease.owner:
            return task.id not in self._runners
        return owner_gone(task, stale_after=self.settings.stale_after)

    async def _requeue_orphans(self) -> None:
        for task in await self.ledger.tasks.leased():
            if self._orphaned(task):
                await self._requeue(task, "its process is gone")

    async def _purge_abandoned(self) -> None:
        """Tasks cancelled with ``purge`` while running are purged by their runner once it
        stops writing; a runner that died first (``kill -9``) never did: purge them now."""
        for task in await self.ledger.tasks.list([TaskState.CANCELLED]):
            if not task.options.get("purge") or not task.last_owner:
                continue
            last = Lease.parse(task.last_owner)
            if last is not None and process_gone(last):
                await asyncio.to_thread(purge_parts, await self.ledger.files.of_task(task.id))

    async def _requeue(self, task: Task, why: str) -> bool:
        lease = task.lease
        who = f"{lease.host}:{lease.pid}" if lease else "unknown"
        try:
            await self.ledger.tasks.transition(
                task.id,
                TaskState.PENDING,
                reason=f"requeued from {who}: {why}",
                expect=TaskState.DOWNLOADING,
                if_owner=lease.owner if lease else None,
                actor=self.lease.owner,
            )
        except TransitionConflictError:
            return False
        self._wake.set()
        return True


def _states(
    state: TaskState | str | Iterable[TaskState | str] | None,
) -> list[TaskState] | None:
    if state is None:
        return None
    items = [state] if isinstance(state, TaskState | str) else list(state)
    return [TaskState(s) for s in items]


class _LedgerProgress:
    """Progress of a task run by another process, from what its checkpoints record."""

    def __init__(self) -> None:
        self._speed = SpeedMeter(window=10)
        self._last: tuple[object, ...] | None = None

    def of(self, task: Task, files: list[FileRecord]) -> DownloadProgress:
        done = task.downloaded_bytes
        total = task.total_bytes
        self._speed.add(done)
        speed = self._speed.rate() if task.state is TaskState.DOWNLOADING else 0.0
        eta = (total - done) / speed if total is not None and speed > 0 else None
        status = status_of(task.state)
        if task.state is TaskState.COMPLETED and total is not None:
            done = total
        message = {
            TaskState.PENDING: f"Queued: {task.label}",
            TaskState.DOWNLOADING: f"Downloading {task.label}",
            TaskState.PAUSED: "Paused; resume to continue from here",
            TaskState.COMPLETED: f"Downloaded {task.label} to {task.destination}",
            TaskState.FAILED: task.error or "failed",
            TaskState.CANCELLED: "Cancelled",
        }[task.state]
        current = next((f.relpath for f in files if f.state.value == "downloading"), None)
        return DownloadProgress(
            status=status,
            message=message,
            percent=round(100.0 * done / total, 2) if total else None,
            downloaded_bytes=done,
            total_bytes=total,
            bytes_per_second=round(speed, 1),
            formatted_speed=format_speed(speed),
            eta_seconds=round(eta, 1) if eta is not None else None,
            formatted_eta=format_eta(eta),
            current_file=current,
            files_completed=task.files_done,
            total_files=task.files_total,
            task_id=task.id,
            state=task.state,
            at=time.time(),
        )

    def changed(self, progress: DownloadProgress) -> bool:
        key = (progress.state, progress.downloaded_bytes, progress.files_completed)
        if key == self._last:
            return False
        self._last = key
        return True


__all__ = ["DownloadManager", "DownloadStatus", "Task"]
