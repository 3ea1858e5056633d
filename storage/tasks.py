"""The task store: enqueue, read, and the state changes of ``storage.moves``."""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.engine import Connection

from storage import moves
from storage.db import Database
from storage.errors import TaskNotFoundError
from storage.records import EventRecord, Lease, NewTask, TaskRecord, task_record
from storage.states import TaskState
from storage.task_rows import (
    EVENTS,
    INSERT_EVENT,
    TASKS,
    current_state,
    event_record,
    get_task,
    new_task_row,
    set_columns,
)


class TaskStore:
    """Queries over the ``tasks`` and ``events`` tables."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def _id(self, task_id: int) -> int:
        return checked_id(task_id, self._db.max_id)

    def _possible(self, ids: Iterable[int]) -> list[int]:
        """Those of ``ids`` a task could have (another would overflow the query's integer)."""
        largest = self._db.max_id
        return [i for i in ids if isinstance(i, int) and 0 < i <= largest]

    # --- creating -------------------------------------------------------------------------

    async def enqueue(self, tasks: Sequence[NewTask], *, actor: str | None = None) -> list[int]:
        """Insert many tasks in one transaction (10,000 at once is normal); ids in order."""
        if not tasks:
            return []
        return await self._db.write(_enqueue, list(tasks), actor, time.time())

    # --- reading --------------------------------------------------------------------------

    async def get(self, task_id: int) -> TaskRecord:
        """The task, or ``TaskNotFoundError``."""
        return await self._db.read(get_task, self._id(task_id))

    async def list(
        self,
        states: Iterable[TaskState] | None = None,
        *,
        limit: int | None = None,
        offset: int = 0,
        ids: Iterable[int] | None = None,
    ) -> list[TaskRecord]:
        """Tasks, newest first, optionally only in ``states`` or with ``ids``."""
        query = select(TASKS).order_by(TASKS.c.id.desc()).offset(offset)
        if states is not None:
            query = query.where(TASKS.c.state.in_([s.value for s in states]))
        if ids is not None:
            query = query.where(TASKS.c.id.in_(self._possible(ids)))
        if limit is not None:
            query = query.limit(limit)
        return await self._db.read(_records, query)

    async def count(self, states: Iterable[TaskState] | None = None) -> int:
        """How many tasks there are (in ``states``)."""
        query = select(func.count()).select_from(TASKS)
        if states is not None:
            query = query.where(TASKS.c.state.in_([s.value for s in states]))
        return await self._db.read(_scalar, query)

    async def find(self, spec_key: str, states: Iterable[TaskState]) -> TaskRecord | None:
        """The newest task for the same download (same ``spec_key``) in one of ``states``."""
        query = (
            select(TASKS)
            .where(TASKS.c.spec_key == spec_key, TASKS.c.state.in_([s.value for s in states]))
            .order_by(TASKS.c.id.desc())
            .limit(1)
        )
        found = await self._db.read(_records, query)
        return found[0] if found else None

    async def events(self, task_id: int) -> list[EventRecord]:
        """The task's history, oldest first."""
        return await self._db.read(_events, self._id(task_id))

    async def states(self, task_ids: Iterable[int]) -> dict[int, tuple[TaskState, str | None]]:
        """Each task's state and lease owner: the cheap read a runner polls for requests."""
        return await self._db.read(_states, self._possible(task_ids))

    async def changed_since(self, since: float) -> list[TaskRecord]:
        """Tasks whose row changed at or after ``since`` (UNIX seconds), oldest change first."""
        query = select(TASKS).where(TASKS.c.updated_at >= since).order_by(TASKS.c.updated_at)
        return await self._db.read(_records, query)

    async def leased(self) -> list[TaskRecord]:
        """Every task some process claims to be downloading."""
        return await self._db.read(
            _records, select(TASKS).where(TASKS.c.state == TaskState.DOWNLOADING.value)
        )

    # --- changing state -------------------------------------------------------------------

    async def transition(
        self,
        task_id: int,
        to: TaskState,
        *,
        reason: str,
        expect: TaskState | None = None,
        if_owner: str | None = None,
        lease: Lease | None = None,
        actor: str | None = None,
        options: dict[str, Any] | None = None,
    ) -> TaskRecord:
        """Move one task to ``to`` if the state table allows it, recording one event.

        ``expect`` makes it a compare-and-set from that state; ``if_owner`` additionally
        requires the lease to belong to that owner; ``options`` replaces the task's options
        in the same transaction. A lost race raises ``TransitionConflictError``; a move the
        table forbids, ``IllegalTransitionError``; either way nothing changes.
        """
        task_id = self._id(task_id)
        return await self._db.write(
            moves.transition,
            task_id,
            to,
            reason,
            expect,
            if_owner,
            lease,
            actor,
            options,
            time.time(),
        )

    async def claim(
        self,
        lease: Lease,
        limit: int,
        *,
        only: Iterable[int] | None = None,
        reason: str = "claimed",
    ) -> list[TaskRecord]:
        """Take up to ``limit`` pending tasks (among ``only`` if given), highest priority then
        oldest first."""
        if limit <= 0:
            return []
        wanted = None if only is None else self._possible(only)
        return await self._db.write(
            moves.claim, lease, limit, wanted, reason, time.time(), self._db.is_sqlite
        )

    async def heartbeat(self, lease: Lease, task_ids: Iterable[int]) -> set[int]:
        """Renew the lease on ``task_ids``; returns those still downloading under it."""
        ids = list(task_ids)
        if not ids:
            return set()
        return await self._db.write(moves.heartbeat, lease.owner, ids, time.time())

    async def note(self, task_id: int, reason: str, *, actor: str | None = None) -> None:
        """Record something that happened to a task without changing its state (the remote
        file changed, blocks were re-fetched, …): an event whose from and to are equal."""
        await self._db.write(_note, self._id(task_id), reason, actor, time.time())

    # --- other fields ---------------------------------------------------------------------

    async def set_options(self, task_id: int, options: dict[str, Any]) -> None:
        """Replace the task's options (callers never put secrets there)."""
        await self._db.write(
            set_columns, self._id(task_id), {"options": options, "updated_at": time.time()}
        )

    async def merge_options(self, task_id: int, changes: dict[str, Any]) -> dict[str, Any]:
        """Set only the keys of ``changes`` in the task's options, reading what is stored in
        the same transaction, so a key another process wrote meanwhile (``modelhaul limit
        --task`` writes ``rate_limit``) is kept; returns the options afterwards."""
        return await self._db.write(_merge_options, self._id(task_id), dict(changes), time.time())

    async def set_files_host(self, task_id: int, host: str, owner: str) -> bool:
        """Record that the run under ``owner``'s lease writes the task's files on ``host``
        (False: the lease is no longer ``owner``'s, nothing written)."""
        return await self._db.write(_set_files_host, self._id(task_id), host, owner)

    async def remove(self, task_id: int) -> None:
        """Delete a task and (by cascade) its files, chunks and events from the ledger."""
        await self._db.write(_remove, self._id(task_id))


# --- units of work (run in one transaction each) ----------------------------------------------


def _merge_options(
    conn: Connection, task_id: int, changes: dict[str, Any], now: float
) -> dict[str, Any]:
    # FOR UPDATE: under PostgreSQL's READ COMMITTED a concurrent merge would otherwise read
    # the same options and one of the two changes would be lost.
    query = select(TASKS.c.options).where(TASKS.c.id == task_id).with_for_update()
    row = conn.execute(query).first()
    if row is None:
        raise TaskNotFoundError(task_id)
    options = {**(row.options or {}), **changes}
    set_columns(conn, task_id, {"options": options, "updated_at": now})
    return options


def _set_files_host(conn: Connection, task_id: int, host: str, owner: str) -> bool:
    # Not a state change, so not in storage.moves; fenced on the lease all the same, so a
    # run that was taken over cannot say the files are on its host.
    stmt = (
        update(TASKS)
        .where(TASKS.c.id == task_id, TASKS.c.lease_owner == owner)
        .values(files_host=host)
    )
    return conn.execute(stmt).rowcount == 1


def _enqueue(conn: Connection, tasks: list[NewTask], actor: str | None, now: float) -> list[int]:
    result = conn.execute(
        insert(TASKS).returning(TASKS.c.id, sort_by_parameter_order=True),
        [new_task_row(t, now) for t in tasks],
    )
    ids = [r.id for r in result]
    conn.execute(
        insert(EVENTS),
        [
            {
                "task_id": i,
                "from_state": None,
                "to_state": t.state.value,
                "at": now,
                "reason": "created",
                "actor": actor,
            }
            for i, t in zip(ids, tasks, strict=True)
        ],
    )
    return ids


def _note(conn: Connection, task_id: int, reason: str, actor: str | None, now: float) -> None:
    state = current_state(conn, task_id)[0].value
    conn.execute(
        INSERT_EVENT,
        {
            "task_id": task_id,
            "from_state": state,
            "to_state": state,
            "at": now,
            "reason": reason,
            "actor": actor,
        },
    )


MAX_ID = 2**63 - 1  # SQLite's largest integer: no task can have a larger id


def checked_id(task_id: int, largest: int = MAX_ID) -> int:
    """``task_id`` if a task could have it; else ``TaskNotFoundError`` at once (a larger
    number would overflow the database's integer instead of finding nothing). ``largest``
    is the backend's (``Database.max_id``: PostgreSQL's ids are 32-bit)."""
    if isinstance(task_id, bool) or not isinstance(task_id, int) or not 0 < task_id <= largest:
        raise TaskNotFoundError(task_id)
    return task_id


def _remove(conn: Connection, task_id: int) -> None:
    if conn.execute(delete(TASKS).where(TASKS.c.id == task_id)).rowcount == 0:
        raise TaskNotFoundError(task_id)


def _records(conn: Connection, query: Any) -> list[TaskRecord]:
    return [task_record(r) for r in conn.execute(query)]


def _scalar(conn: Connection, query: Any) -> int:
    return int(conn.execute(query).scalar_one())


def _events(conn: Connection, task_id: int) -> list[EventRecord]:
    query = select(EVENTS).where(EVENTS.c.task_id == task_id).order_by(EVENTS.c.id)
    return [event_record(r) for r in conn.execute(query)]


def _states(conn: Connection, ids: list[int]) -> dict[int, tuple[TaskState, str | None]]:
    query = select(TASKS.c.id, TASKS.c.state, TASKS.c.lease_owner).where(TASKS.c.id.in_(ids))
    return {r.id: (TaskState(r.state), r.lease_owner) for r in conn.execute(query)}
