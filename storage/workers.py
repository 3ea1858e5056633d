"""The workers table: a row per live process (manager) that runs downloads, kept by its own
heartbeat, and the count of tasks the fleet runs, which the fleet's limits are shared by.

Every statement is plain SQLAlchemy Core (no dialect's upsert): a row is only ever written
by the manager it names, so "update, else insert" in one transaction cannot race.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.engine import Connection

from storage.db import Database
from storage.models import WORKERS
from storage.states import TaskState
from storage.task_rows import TASKS

_W = WORKERS


@dataclass(frozen=True, slots=True)
class WorkerRecord:
    """One worker as its last heartbeat left it: ``tasks`` running, receiving ``rate``
    bytes per second."""

    owner: str
    host: str
    pid: int
    started_at: float
    heartbeat_at: float
    tasks: int = 0
    rate: int = 0
    version: str = ""

    def gone(self, now: float, stale_after: float) -> bool:
        """Whether its heartbeat is too old for it to be running still."""
        return now - self.heartbeat_at > stale_after


class WorkerStore:
    """Registers, renews and lists the workers; counts the fleet's running tasks."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def beat(self, worker: WorkerRecord) -> None:
        """Write ``worker``'s row as it is now (its first beat registers it; a row deleted
        meanwhile by someone who thought it gone comes back)."""
        await self._db.write(_beat, worker)

    async def leave(self, owner: str) -> None:
        """Delete ``owner``'s row (a clean close)."""
        await self._db.write(_leave, owner)

    async def list(self) -> list[WorkerRecord]:
        """Every row, gone ones included, by host then start."""
        return await self._db.read(_list)

    async def prune(self, stale_after: float, now: float | None = None) -> int:
        """Delete the rows whose heartbeat is older than ``stale_after``; how many."""
        now = time.time() if now is None else now
        return await self._db.write(_prune, now - stale_after)

    async def running_elsewhere(
        self, owner: str, stale_after: float, now: float | None = None
    ) -> int:
        """How many tasks owners other than ``owner`` run now under a live lease (one whose
        heartbeat is younger than ``stale_after``). Counted from the leases rather than the
        workers' rows: a claim writes its lease at once, a worker's row only at its next
        heartbeat."""
        now = time.time() if now is None else now
        return await self._db.read(_running_elsewhere, owner, now - stale_after)


def _beat(conn: Connection, worker: WorkerRecord) -> None:
    values = {
        "host": worker.host,
        "pid": worker.pid,
        "started_at": worker.started_at,
        "heartbeat_at": worker.heartbeat_at,
        "tasks": worker.tasks,
        "rate": worker.rate,
        "version": worker.version,
    }
    updated = conn.execute(update(_W).where(_W.c.owner == worker.owner).values(**values))
    if updated.rowcount == 0:
        conn.execute(insert(_W).values(owner=worker.owner, **values))


def _leave(conn: Connection, owner: str) -> None:
    conn.execute(delete(_W).where(_W.c.owner == owner))


def _list(conn: Connection) -> list[WorkerRecord]:
    query = select(_W).order_by(_W.c.host, _W.c.started_at, _W.c.owner)
    return [
        WorkerRecord(
            owner=r.owner,
            host=r.host,
            pid=r.pid,
            started_at=r.started_at,
            heartbeat_at=r.heartbeat_at,
            tasks=r.tasks,
            rate=r.rate,
            version=r.version,
        )
        for r in conn.execute(query)
    ]


def _prune(conn: Connection, before: float) -> int:
    return conn.execute(delete(_W).where(_W.c.heartbeat_at < before)).rowcount


def _running_elsewhere(conn: Connection, owner: str, since: float) -> int:
    query = (
        select(func.count())
        .select_from(TASKS)
        .where(
            TASKS.c.state == TaskState.DOWNLOADING.value,
            TASKS.c.lease_owner != owner,
            TASKS.c.heartbeat_at >= since,
        )
    )
    return int(conn.execute(query).scalar_one())
