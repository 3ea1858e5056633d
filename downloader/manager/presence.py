"""This manager's row in the ledger's ``workers`` table: written when it starts running
downloads, renewed on the scheduler's heartbeat with how many tasks it runs and how fast
it receives, deleted when it closes cleanly. A process killed outright leaves its row
behind; a row whose heartbeat is older than ``stale_after`` counts as gone, and each live
manager deletes such rows as it beats."""

from __future__ import annotations

import logging
import time
from importlib.metadata import PackageNotFoundError, version

from storage import Lease, Ledger, LedgerUnavailableError, WorkerRecord

log = logging.getLogger(__name__)


def modelhaul_version() -> str:
    """The installed modelhaul's version ("" from a checkout that was not installed)."""
    try:
        return version("modelhaul")
    except PackageNotFoundError:
        return ""


class Presence:
    """The workers row of one manager (its lease names it)."""

    def __init__(self, ledger: Ledger, lease: Lease, *, stale_after: float) -> None:
        self._ledger = ledger
        self._lease = lease
        self._stale_after = stale_after
        self._started = time.time()
        self._version = modelhaul_version()
        self.joined = False
        self.tasks = 0  # as the last beat wrote it

    async def beat(self, tasks: int, rate: float) -> None:
        """Say that this manager runs ``tasks`` tasks receiving ``rate`` bytes/s now, and
        delete the rows of workers that are gone. A ledger that cannot take it is logged:
        the row goes stale, and this manager is shown as gone until the next beat lands."""
        now = time.time()
        row = WorkerRecord(
            owner=self._lease.owner,
            host=self._lease.host,
            pid=self._lease.pid,
            started_at=self._started,
            heartbeat_at=now,
            tasks=tasks,
            rate=max(0, int(rate)),
            version=self._version,
        )
        self.tasks = tasks
        self.joined = True  # before the write: one cancelled mid-way may land all the same
        try:
            await self._ledger.workers.beat(row)
            await self._ledger.workers.prune(self._stale_after, now)
        except LedgerUnavailableError as e:
            log.info("cannot write this worker's heartbeat: %s", e)

    async def leave(self) -> None:
        """Delete this manager's row (it is closing); harmless if it never joined."""
        if not self.joined:
            return
        try:
            await self._ledger.workers.leave(self._lease.owner)
        except LedgerUnavailableError as e:  # it goes stale and is pruned by others
            log.info("cannot remove this worker's row: %s", e)
        self.joined = False
