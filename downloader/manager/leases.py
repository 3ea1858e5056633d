"""Leases: who runs a task, whether that owner is gone, and the ledger moves that follow.

A lease names a host, a pid and the process's start time (and, since one process may hold
several managers, which of them). On the same host a dead pid, or a live pid with another
start time (the pid was reused), means the owner is gone *now*: the next process takes the
task over at once. Across hosts only a stale heartbeat can tell.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import logging
import os
import secrets
import socket
import sys
import time
from collections.abc import Callable, Container, Iterable, Sequence
from pathlib import Path

from downloader.engine.partfile import partial_path
from storage import FileRecord, Lease, Ledger, TaskRecord, TaskState, TransitionConflictError

log = logging.getLogger(__name__)


@functools.cache
def _boot_time() -> float | None:
    try:
        for line in Path("/proc/stat").read_text().splitlines():
            if line.startswith("btime "):
                return float(line.split()[1])
    except OSError:
        pass
    return None


def process_start_time(pid: int) -> float | None:
    """When ``pid`` started (UNIX seconds, to 1/100 s), from /proc; None where unknown."""
    boot = _boot_time()
    if boot is None:
        return None
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: count from the last ')'.
    fields = stat[stat.rindex(")") + 2 :].split()
    ticks = int(fields[19])  # field 22 of the whole line: starttime in clock ticks
    return round(boot + ticks / os.sysconf("SC_CLK_TCK"), 2)


def this_process() -> Lease:
    """The lease identity of the running process."""
    started = process_start_time(os.getpid())
    if started is None:  # no /proc (macOS, Windows): our own start is close enough
        started = round(time.time(), 2)
    return Lease(host=socket.gethostname(), pid=os.getpid(), started=started)


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists on this host."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, owned by someone else
    return True


def owner_gone(task: TaskRecord, *, stale_after: float, now: float | None = None) -> bool:
    """Whether the process (or, within this process, the manager) holding ``task`` can no
    longer be running it."""
    lease = task.lease
    if lease is None:
        return True
    now = time.time() if now is None else now
    if lease.same_process(this_process()):
        # Another manager of this very process: alive as long as it keeps its heartbeat.
        return task.heartbeat_at is None or now - task.heartbeat_at > stale_after
    if lease.host == this_process().host:
        if process_gone(lease):
            return True
        if sys.platform != "linux" and task.heartbeat_at is not None:
            return now - task.heartbeat_at > stale_after  # pid alone cannot prove it
        return False
    return task.heartbeat_at is None or now - task.heartbeat_at > stale_after


def process_gone(lease: Lease) -> bool:
    """Whether the process ``lease`` names, on this host, has certainly ended (its pid is
    free, or now belongs to a process started at another time)."""
    if lease.host != this_process().host:
        return False  # another machine's: no way to know from here
    if not pid_alive(lease.pid):
        return True
    started = process_start_time(lease.pid)
    return started is not None and abs(started - lease.started) > 0.05


async def take_files_host(ledger: Ledger, task: TaskRecord, lease: Lease) -> str | None:
    """Record that the run under ``lease`` writes ``task``'s files on its host (where the
    finished files will be); returns the host that wrote them before if it was another one
    (a takeover across hosts: partial files there are reachable here only on shared
    storage)."""
    before = task.files_host
    if before == lease.host:
        return None
    await ledger.tasks.set_files_host(task.id, lease.host, lease.owner)
    return before


def purge_parts(files: Sequence[FileRecord]) -> None:
    """Delete the partial data (``.part``, ``.incomplete``) of ``files`` (blocking)."""
    for f in files:
        partial_path(f).unlink(missing_ok=True)


class Leases:
    """The leases of one manager: its own identity, and the moves that keep tasks from
    being held by owners that are gone."""

    def __init__(
        self, ledger: Ledger, *, stale_after: float, on_requeue: Callable[[], None]
    ) -> None:
        self._ledger = ledger
        self._stale_after = stale_after
        self._on_requeue = on_requeue  # a task went back to the queue: look at it
        # One process may run several managers: each holds its own leases.
        self.lease = dataclasses.replace(this_process(), instance=secrets.token_hex(4))

    @property
    def owner(self) -> str:
        """This manager's owner string, as the ledger records it."""
        return self.lease.owner

    def orphaned(self, task: TaskRecord, running: Container[int]) -> bool:
        """Downloading under a lease nobody honours: a gone process, or ours without a
        runner (a runner lost to a bug must not wedge the task)."""
        if task.lease is not None and task.lease.owner == self.owner:
            return task.id not in running
        return owner_gone(task, stale_after=self._stale_after)

    async def requeue(self, task: TaskRecord, why: str) -> bool:
        """Put a task another owner held back in the queue (False: it moved meanwhile)."""
        lease = task.lease
        who = f"{lease.host}:{lease.pid}" if lease else "unknown"
        try:
            await self._ledger.tasks.transition(
                task.id,
                TaskState.PENDING,
                reason=f"requeued from {who}: {why}",
                expect=TaskState.DOWNLOADING,
                if_owner=lease.owner if lease else None,
                actor=self.owner,
            )
        except TransitionConflictError:
            return False
        self._on_requeue()
        return True

    async def requeue_orphans(self, running: Container[int]) -> None:
        """Requeue every task whose owner is gone."""
        for task in await self._ledger.tasks.leased():
            if self.orphaned(task, running):
                await self.requeue(task, "its process is gone")

    async def requeue_mine(self, why: str) -> None:
        """Requeue every task still leased to this manager (it is closing)."""
        for task in await self._ledger.tasks.leased():
            if task.lease is not None and task.lease.owner == self.owner:
                await self.requeue(task, why)

    async def purge_abandoned(self) -> None:
        """Tasks cancelled with ``purge`` while running are purged by their runner once it
        stops writing; a runner that died first (``kill -9``) never did: purge them now."""
        for task in await self._ledger.tasks.list([TaskState.CANCELLED]):
            last = task.last_lease
            if task.options.get("purge") and last is not None and process_gone(last):
                await asyncio.to_thread(purge_parts, await self._ledger.files.of_task(task.id))

    async def purge_unless_held(self, task: TaskRecord) -> None:
        """Purge a task cancelled just now (``task`` as it was before) unless a live process
        elsewhere holds it: that one purges once it stops writing."""
        held = (
            task.state is TaskState.DOWNLOADING
            and task.lease is not None
            and not owner_gone(task, stale_after=self._stale_after)
        )
        if not held:
            await asyncio.to_thread(purge_parts, await self._ledger.files.of_task(task.id))

    async def heartbeat(self, task_ids: Iterable[int]) -> None:
        """Renew this manager's lease on ``task_ids``."""
        await self._ledger.tasks.heartbeat(self.lease, list(task_ids))

    async def take_over(self, task: TaskRecord, patience: float = 5.0) -> None:
        """Stop another runner of ``task`` (a pause under its lease) and let it make its last
        checkpoint; past ``patience`` we go on regardless: fencing refuses its late writes."""
        assert task.lease is not None
        with contextlib.suppress(TransitionConflictError):  # it may be stopping already
            await self._ledger.tasks.transition(
                task.id,
                TaskState.PAUSED,
                reason="taken over by a newer request",
                expect=TaskState.DOWNLOADING,
                if_owner=task.lease.owner,
                actor=self.owner,
            )
        await self.await_last_checkpoint(task, patience)

    async def await_last_checkpoint(self, task: TaskRecord, patience: float = 5.0) -> None:
        """Before a stopped task runs again: if the process that ran it last is alive, give
        it (up to ``patience``) to write its final checkpoint, which marks its files clean.
        Once another runner claims the task, that checkpoint would be refused."""
        last = task.last_lease
        if last is None or (last.host == self.lease.host and not pid_alive(last.pid)):
            return
        deadline = time.monotonic() + patience
        while time.monotonic() < deadline:
            if not any(f.dirty for f in await self._ledger.files.of_task(task.id)):
                return
            await asyncio.sleep(0.05)
