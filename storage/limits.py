"""The live bandwidth limits: the global one (a rate or a schedule, table ``limits``) and each
task's own (its ``rate_limit`` option), read by every process that runs downloads.

Values are stored as given; ``downloader.limits`` checks them before they get here and
reads the schedule back.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Connection

from storage import dialect
from storage.db import Database
from storage.errors import TaskNotFoundError
from storage.models import LIMITS
from storage.states import UNDERWAY, TaskState
from storage.task_rows import TASKS, set_columns
from storage.tasks import checked_id

_L = LIMITS
GLOBAL = "global"


@dataclass(frozen=True)
class LimitRecord:
    """The global limit as stored: ``rate`` (None: none) or a ``schedule`` (its JSON)."""

    rate: int | None = None
    schedule: list[Any] | None = None
    updated_at: float | None = None


@dataclass(frozen=True)
class LimitSnapshot:
    """What a process running downloads reads each watch: the global limit and the own
    limit of each of its tasks that has one."""

    global_limit: LimitRecord
    task_rates: dict[int, int]


class LimitStore:
    """Reads and writes the live limits."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def get(self) -> LimitRecord:
        """The global limit (no row yet: none)."""
        return await self._db.read(_get)

    async def set_global(self, rate: int | None, schedule: list[Any] | None = None) -> None:
        """Set the global limit: a fixed ``rate`` or a ``schedule`` (one replaces the other)."""
        await self._db.write(_set, rate, schedule, time.time())

    async def set_task(self, task_id: int, rate: int | None) -> dict[str, Any]:
        """Set (None: drop) the own limit of a task, in one transaction with reading its
        options (nothing else in them is lost); returns its options afterwards."""
        return await self._db.write(_set_task, checked_id(task_id, self._db.max_id), rate)

    async def task_rates(self, states: Iterable[TaskState] = UNDERWAY) -> dict[int, int]:
        """The own limit of every task in ``states`` that has one."""
        return await self._db.read(_task_rates, None, [s.value for s in states])

    async def snapshot(self, task_ids: Iterable[int]) -> LimitSnapshot:
        """The global limit and the own limits of ``task_ids``, in one read."""
        return await self._db.read(_snapshot, list(task_ids))


def _get(conn: Connection) -> LimitRecord:
    row = conn.execute(select(_L).where(_L.c.scope == GLOBAL)).first()
    if row is None:
        return LimitRecord()
    return LimitRecord(row.rate, row.schedule, row.updated_at)


def _set(conn: Connection, rate: int | None, schedule: list[Any] | None, now: float) -> None:
    values = {"rate": rate, "schedule": schedule, "updated_at": now}
    stmt = dialect.insert(conn, _L).values(scope=GLOBAL, **values)
    conn.execute(stmt.on_conflict_do_update(index_elements=[_L.c.scope], set_=values))


def _set_task(conn: Connection, task_id: int, rate: int | None) -> dict[str, Any]:
    # FOR UPDATE: a concurrent merge of the options must not be lost (READ COMMITTED).
    query = select(TASKS.c.options).where(TASKS.c.id == task_id).with_for_update()
    row = conn.execute(query).first()
    if row is None:
        raise TaskNotFoundError(task_id)
    options = {k: v for k, v in (row.options or {}).items() if k != "rate_limit"}
    if rate is not None:
        options["rate_limit"] = rate
    set_columns(conn, task_id, {"options": options, "updated_at": time.time()})
    return options


def _task_rates(conn: Connection, ids: list[int] | None, states: list[str]) -> dict[int, int]:
    query = select(TASKS.c.id, TASKS.c.options)
    query = query.where(TASKS.c.id.in_(ids)) if ids is not None else query
    query = query.where(TASKS.c.state.in_(states)) if states else query
    out = {}
    for row in conn.execute(query.order_by(TASKS.c.id)):
        rate = (row.options or {}).get("rate_limit")
        if isinstance(rate, int) and not isinstance(rate, bool) and rate > 0:
            out[row.id] = rate
    return out


def _snapshot(conn: Connection, ids: list[int]) -> LimitSnapshot:
    return LimitSnapshot(_get(conn), _task_rates(conn, ids, []) if ids else {})
