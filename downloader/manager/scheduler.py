"""Which tasks this manager runs, and when: claiming from the queue, starting a runner per
task, noticing moves other processes make, keeping leases alive.

Two loops: the scheduler claims what fits (``max_tasks`` at a time) and requeues what
owners that are gone left behind; the watch notices a pause or cancel written by anyone
(within ``settings.watch_seconds``), renews this manager's leases and its row in the
``workers`` table (``manager.presence``: from its start until it closes). A manager that drains
the queue (a worker, a server) claims any pending task; otherwise only the tasks it was
asked to run (``adopt``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import KeysView, Mapping

from downloader.engine.timing import wait_a_while
from downloader.manager.bus import ProgressBus
from downloader.manager.leases import Leases
from downloader.manager.limits import LiveLimits
from downloader.manager.presence import Presence
from downloader.manager.runner import RunContext, TaskRunner
from downloader.manager.taskview import FileView
from downloader.manager.tunables import engine_for
from downloader.progress import DownloadProgress
from downloader.sources import Resolution, source_for
from storage import LedgerUnavailableError, TaskRecord, TaskState

log = logging.getLogger(__name__)


class Scheduler:
    """Claims tasks and runs them, one ``TaskRunner`` each."""

    def __init__(
        self,
        ctx: RunContext,
        leases: Leases,
        bus: ProgressBus,
        limits: LiveLimits,
        presence: Presence,
    ) -> None:
        self._ctx = ctx
        self._presence = presence
        self._limits = limits
        self._settings = ctx.settings
        self._ledger = ctx.ledger
        self._leases = leases
        self._bus = bus
        self._runners: dict[int, TaskRunner] = {}
        self._mine: set[int] = set()  # tasks to run when not draining the queue
        self._drain = False
        self._tokens: dict[int, str] = {}  # in memory only: never written anywhere
        self._credentials: dict[int, dict[str, str]] = {}  # headers, in memory only too
        self._resolutions: dict[int, Resolution] = {}  # a preflight's answers, for one run
        # Tasks whose runner ended here without being able to write how (a full disk).
        self.unrecorded: dict[int, LedgerUnavailableError] = {}
        self.wake = asyncio.Event()
        self._loops: list[asyncio.Task[None]] = []

    # --- what to run ------------------------------------------------------------------------

    def remember(
        self,
        task_id: int,
        *,
        token: str | None = None,
        credentials: Mapping[str, str] | None = None,
        resolution: Resolution | None = None,
    ) -> None:
        """Keep, in memory only, the caller's token and credential headers for ``task_id``
        and a resolution found for it already (used by its next run)."""
        if token:
            self._tokens[task_id] = token
        if credentials:
            self._credentials[task_id] = dict(credentials)
        if resolution is not None:
            self._resolutions[task_id] = resolution

    def adopt(self, task_id: int) -> None:
        """Run ``task_id`` here when it is pending (a manager not draining the queue runs
        only the tasks it adopted)."""
        self._mine.add(task_id)
        self.wake.set()

    def forget(self, task_id: int) -> None:
        """No longer run ``task_id`` on our own account."""
        self._mine.discard(task_id)

    @property
    def running(self) -> KeysView[int]:
        """The ids of the tasks this manager runs now (a live view)."""
        return self._runners.keys()

    def snapshot(self, task_id: int) -> DownloadProgress | None:
        """The progress of ``task_id`` from its runner here (None: not run here)."""
        runner = self._runners.get(task_id)
        return runner.snapshot() if runner is not None else None

    def file_views(self, task_id: int) -> list[FileView]:
        """Per-file progress of a task run here (empty otherwise)."""
        runner = self._runners.get(task_id)
        return runner.file_views() if runner is not None else []

    # --- the loops --------------------------------------------------------------------------

    def start(self) -> None:
        """Start the loops (once)."""
        if not self._loops:
            self._loops = [
                asyncio.create_task(self._schedule(), name="modelhaul scheduler"),
                asyncio.create_task(self._watch(), name="modelhaul watch"),
            ]
            for loop in self._loops:
                loop.add_done_callback(_said_if_it_ended)

    async def drain(self, *, once: bool) -> None:
        """Run every pending task, from anywhere; with ``once``, return when nothing is
        pending or running any more."""
        self._drain = True
        # Before the first look at the queue: what a killed process left behind is queued
        # again, so ``once`` does not find an empty queue and leave it stranded.
        await self._leases.requeue_orphans(self._runners)
        await self._leases.purge_abandoned()
        self.start()
        self.wake.set()
        if not once:
            await asyncio.Event().wait()
        while True:
            await asyncio.sleep(0.2)
            if self._runners:
                continue
            if await self._ledger.tasks.count([TaskState.PENDING]) == 0 and not self._runners:
                return

    async def close(self) -> None:
        """Stop the loops, then every runner (their tasks go back to the queue)."""
        for loop in self._loops:
            loop.cancel()
        await asyncio.gather(*self._loops, return_exceptions=True)
        self._loops.clear()
        runners = list(self._runners.values())
        for runner in runners:
            runner.stop()
        await asyncio.gather(*(r.stopped() for r in runners))
        await self._presence.leave()

    async def stop(self, task_id: int, moved_to: TaskState) -> bool:
        """Stop this manager's runner of ``task_id`` (the task was moved to ``moved_to``)
        and wait for it to end; False if it does not run here."""
        runner = self._runners.get(task_id)
        if runner is None:
            return False
        runner.stop(moved_to)
        await runner.stopped()
        return True

    async def ended(self, task_id: int) -> None:
        """Until this manager's runner of ``task_id`` (if any) has ended."""
        runner = self._runners.get(task_id)
        if runner is not None:
            await asyncio.shield(runner.stopped())

    async def _schedule(self) -> None:
        """Claim and start tasks while there is room. A ledger that cannot be written stops
        claims, not the loop: it goes on once the ledger takes writes again."""
        last_requeue = 0.0
        while True:
            try:
                last_requeue = await self._schedule_once(last_requeue)
            except LedgerUnavailableError as e:
                log.info("cannot claim tasks now: %s", e)
            except Exception:  # one failed claim must not end the claiming for good
                log.exception("claiming failed; trying again")
                await asyncio.sleep(1.0)
            self.wake.clear()
            await wait_a_while(self.wake, 0.5)

    async def _schedule_once(self, last_requeue: float) -> float:
        """Requeue orphans when due, then claim what fits; returns when orphans were last
        requeued."""
        if time.monotonic() - last_requeue > self._settings.heartbeat_seconds:
            await self._leases.requeue_orphans(self._runners)
            last_requeue = time.monotonic()
        free = self._settings.max_tasks - len(self._runners)
        if free > 0:
            # A claim is a ledger write that completes even if we are cancelled while it
            # runs: let it land, then hand back what it took, so nothing stays leased to
            # a manager that is closing.
            claim = asyncio.ensure_future(self._claim(free))
            try:
                claimed = await asyncio.shield(claim)
            except asyncio.CancelledError:
                for task in await claim:
                    await self._leases.requeue(task, "claimed as its manager closed")
                raise
            if claimed:
                # Their first bytes already under the limits of now, not of the last look.
                await self._refresh_limits([*self._runners, *(t.id for t in claimed)])
            for task in claimed:
                self._run(task)
        return last_requeue

    async def _claim(self, free: int) -> list[TaskRecord]:
        lease = self._leases.lease
        if self._drain:
            return await self._ledger.tasks.claim(lease, free)
        wanted = [i for i in self._mine if i not in self._runners]
        if not wanted:
            return []
        return await self._ledger.tasks.claim(lease, free, only=wanted)

    def _run(self, task: TaskRecord) -> None:
        runner = TaskRunner(
            task,
            ctx=self._ctx_for(task),
            source=source_for(task.provider),
            lease=self._leases.lease,
            bus=self._bus,
            token=self._tokens.get(task.id),
            credentials=self._credentials.get(task.id),
            resolution=self._resolutions.pop(task.id, None),
        )
        self._runners[task.id] = runner
        runner.start().add_done_callback(lambda job: self._ended(task.id, runner, job))

    def _ctx_for(self, task: TaskRecord) -> RunContext:
        """The run context of ``task``: its own engine, with its own lane of the limit."""
        rate = task.options.get("rate_limit")
        lane = self._limits.lane(task.id, int(rate) if rate is not None else None)
        engine = engine_for(self._ctx.engine, self._settings, task.options, lane)
        if engine is self._ctx.engine:
            return self._ctx
        return dataclasses.replace(self._ctx, engine=engine)

    def _ended(self, task_id: int, runner: TaskRunner, job: asyncio.Task[None]) -> None:
        self._runners.pop(task_id, None)
        self._limits.drop(task_id, runner.limiter)
        if runner.unrecorded is not None:
            self.unrecorded[task_id] = runner.unrecorded
        else:
            self.unrecorded.pop(task_id, None)
        if not job.cancelled() and job.exception() is not None:  # a bug: say it, once
            log.error("task %s: its runner failed", task_id, exc_info=job.exception())
        self.wake.set()

    async def _refresh_limits(self, task_ids: list[int]) -> None:
        """Set the rate limits to the ledger's (``manager.limits``); a ledger that cannot be
        read leaves them as they are until the next look."""
        try:
            await self._limits.refresh(task_ids)
        except LedgerUnavailableError as e:
            log.info("cannot read the rate limits now: %s", e)

    async def _watch(self) -> None:
        """Notice pause/cancel written by other processes; keep our leases and our row in
        the workers table alive."""
        await self._beat()  # listed as a worker from the start, running tasks or not
        last_beat = time.monotonic()
        # On PostgreSQL a pause or cancel from anywhere is heard as it commits (LISTEN);
        # elsewhere, and whenever the feed is away, this is the poll it always was.
        async with self._ledger.changes() as feed:
            due = time.monotonic() + self._settings.watch_seconds
            while True:
                heard = await feed.wait(max(0.0, due - time.monotonic()))
                mine = set(self._runners)
                if heard.missed or heard.task_ids - mine:
                    self.wake.set()  # a task may have become pending: look for claims too
                # Other workers' changes wake the claims only: a look of ours is due on
                # the clock, or at once for a change to one of our tasks.
                if time.monotonic() < due and not (heard.missed or heard.task_ids & mine):
                    continue
                due = time.monotonic() + self._settings.watch_seconds
                try:
                    last_beat = await self._tick(last_beat)
                except LedgerUnavailableError as e:  # the database is away: look again soon
                    log.info("cannot look at the ledger now: %s", e)
                except Exception:  # one bad look must not end pause/cancel and heartbeats
                    log.exception("the watch loop's look failed; it goes on")

    async def _tick(self, last_beat: float) -> float:
        """One look: stop moved tasks, renew leases and our row when due; returns when the
        last heartbeat was."""
        running = list(self._runners)
        if running:
            await self._look(running)
        due = time.monotonic() - last_beat >= self._settings.heartbeat_seconds
        if due and self._runners:
            try:
                await self._leases.heartbeat(self._runners)
            except LedgerUnavailableError as e:  # the runners meet it too, and stop
                log.info("cannot renew leases: %s", e)
        if due or len(self._runners) != self._presence.tasks:  # `workers` sees it now
            await self._beat()
        if due:
            last_beat = time.monotonic()
        return last_beat

    async def _look(self, running: list[int]) -> None:
        """Take up the limits (and this manager's share of them) as they are now; stop the
        runners of tasks that were moved (a pause, a cancel) or taken over."""
        await self._refresh_limits(running)
        states = await self._ledger.tasks.states(running)
        for task_id in running:
            state, owner = states.get(task_id, (None, None))
            runner = self._runners.get(task_id)
            if runner is not None and (
                state is not TaskState.DOWNLOADING or owner != self._leases.owner
            ):
                runner.stop(state or TaskState.CANCELLED)

    async def _beat(self) -> None:
        """Renew this manager's workers row: how many tasks it runs, how fast it receives."""
        runners = list(self._runners.values())
        rate = sum(r.snapshot().bytes_per_second for r in runners)
        await self._presence.beat(len(runners), rate)


def _said_if_it_ended(loop: asyncio.Task[None]) -> None:
    """A loop ends only when cancelled: any other end is a bug that would otherwise pass in
    silence (no more claims, or no more heartbeats), so it is logged."""
    if not loop.cancelled() and loop.exception() is not None:
        log.error("%s ended", loop.get_name(), exc_info=loop.exception())
