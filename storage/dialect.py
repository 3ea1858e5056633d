"""The few statements that differ between SQLite and PostgreSQL, chosen by the connection's
dialect: an upsert, the migration lock, and the notification a state change sends.

Everything else in ``storage`` is portable SQLAlchemy Core; what is not lives here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Table, text
from sqlalchemy.engine import Connection

# The channel every task state change is announced on (payload: the task id), so that a
# process running a task hears a pause or cancel from any host at once instead of at its
# next poll. ``storage.notify`` listens on it.
CHANNEL = "modelhaul_tasks"
# pg_advisory_xact_lock's key for "migrating the ledger": any fixed 64-bit number that no
# other application sharing the database is likely to use ("modelhaul" in ASCII, truncated).
MIGRATION_LOCK = 0x6D6F64656C6861

_NOTIFY = text(
    f"SELECT pg_notify('{CHANNEL}', CAST(i AS text)) FROM unnest(CAST(:ids AS integer[])) AS i"
)


def is_postgresql(conn: Connection) -> bool:
    """Whether ``conn`` talks to PostgreSQL."""
    return conn.dialect.name == "postgresql"


def insert(conn: Connection, table: Table) -> Any:
    """An ``INSERT`` for ``table`` that takes ``.on_conflict_do_update(...)`` on this backend
    (SQLite and PostgreSQL spell the upsert the same way, through different classes)."""
    return insert_for(is_postgresql(conn), table)


def insert_for(postgresql: bool, table: Table) -> Any:
    """``insert`` for a backend known beforehand (a statement built once per backend)."""
    if postgresql:
        from sqlalchemy.dialects import postgresql as pg  # heavy to import; only where used

        return pg.insert(table)
    from sqlalchemy.dialects import sqlite

    return sqlite.insert(table)


def lock_for_migration(conn: Connection) -> None:
    """Serialize migrations across processes until this transaction ends. On PostgreSQL an
    advisory lock (many workers may open a fresh ledger at the same moment, and DDL in two
    transactions at once would fail); SQLite's ``BEGIN IMMEDIATE`` already holds the lock."""
    if is_postgresql(conn):
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})


def notify_moved(conn: Connection, task_ids: Sequence[int]) -> None:
    """Announce state changes of ``task_ids`` (PostgreSQL ``NOTIFY``, delivered when this
    transaction commits and never if it rolls back); nothing on SQLite, whose readers poll."""
    if task_ids and is_postgresql(conn):
        conn.execute(_NOTIFY, {"ids": list(task_ids)})
