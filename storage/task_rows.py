"""Rows of the tasks and events tables as records, and the few statements every other
module of the task store builds on (read one task, its state, set columns, add an event)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.engine import Connection

from storage.errors import TaskNotFoundError
from storage.models import EVENTS, TASKS
from storage.records import EventRecord, NewTask, TaskRecord, task_record
from storage.states import TaskState

INSERT_EVENT = insert(EVENTS)

# Hot statements are built once: constructing a statement costs more than running it.
_SELECT_TASK = select(TASKS).where(TASKS.c.id == bindparam("task_id"))
_SELECT_STATE = select(TASKS.c.state, TASKS.c.lease_owner).where(TASKS.c.id == bindparam("task_id"))
_LOCK_STATE = _SELECT_STATE.with_for_update()


def get_task(conn: Connection, task_id: int) -> TaskRecord:
    """One task (``TaskNotFoundError`` if there is none)."""
    row = conn.execute(_SELECT_TASK, {"task_id": task_id}).first()
    if row is None:
        raise TaskNotFoundError(task_id)
    return task_record(row)


def set_columns(conn: Connection, task_id: int, values: dict[str, Any]) -> None:
    """Write some of a task's columns (``TaskNotFoundError`` if there is none)."""
    if conn.execute(update(TASKS).where(TASKS.c.id == task_id).values(**values)).rowcount == 0:
        raise TaskNotFoundError(task_id)


def current_state(
    conn: Connection, task_id: int, *, lock: bool = False
) -> tuple[TaskState, str | None]:
    """A task's state and lease owner; ``lock``: and hold its row until the transaction ends
    (PostgreSQL's ``FOR UPDATE``: what was read stays true while the caller acts on it)."""
    row = conn.execute(_LOCK_STATE if lock else _SELECT_STATE, {"task_id": task_id}).first()
    if row is None:
        raise TaskNotFoundError(task_id)
    return TaskState(row.state), row.lease_owner


def new_task_row(task: NewTask, now: float) -> dict[str, Any]:
    """The row a new task is inserted as."""
    return {
        "provider": task.provider,
        "source": task.source,
        "revision": task.revision,
        "patterns": list(task.patterns) if task.patterns is not None else None,
        "destination": task.destination,
        "options": dict(task.options),
        "spec_key": task.spec_key,
        "label": task.label or task.source,
        "state": task.state.value,
        "priority": task.priority,
        "downloaded_bytes": 0,
        "files_total": 0,
        "files_done": 0,
        "created_at": now,
        "updated_at": now,
    }


def event_record(row: Any) -> EventRecord:
    """Build an ``EventRecord`` from a row of the events table."""
    return EventRecord(
        id=row.id,
        task_id=row.task_id,
        from_state=TaskState(row.from_state) if row.from_state is not None else None,
        to_state=TaskState(row.to_state),
        at=row.at,
        reason=row.reason,
        actor=row.actor,
    )
