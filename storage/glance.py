"""The ledger read without SQLAlchemy, for a command that only looks (``modelhaul ls``).

Loading SQLAlchemy takes longer (about 0.2 s) than ``hf cache ls`` takes in all, and a
listing is one SELECT. So this reads the SQLite file with the standard library, read-only
(``mode=ro``: it never creates, migrates or takes a write lock), and only at the schema
revision it was written for. Anything else answers ``None`` and the caller opens the ledger
as usual: a ledger URL rather than a file, a schema older or newer than ``SCHEMA``, a file
that is not a SQLite database, one busy past the timeout. No file at all is no tasks.

Rows become records through the same ``task_record``/``file_record`` as the ledger's own
queries; ``tests/test_glance.py`` holds both readings of one ledger equal.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Iterable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from storage.records import FileRecord, TaskRecord, file_record, task_record
from storage.states import TaskState

# The migration this module's queries were written for (a test holds it to the scripts'
# head: a new migration must look here too).
SCHEMA = "0008"
_JSON = {"tasks": ("patterns", "options"), "files": ("meta",)}
_BOOLEAN = {"tasks": (), "files": ("accept_ranges", "dirty")}
BUSY_SECONDS = 1.0


async def tasks(target: str, states: Iterable[TaskState] | None = None) -> list[TaskRecord] | None:
    """The ledger's tasks, newest first (only those in ``states``); None: ask the ledger."""
    query, params = "SELECT * FROM tasks", ()
    if states is not None:
        values = tuple(s.value for s in states)
        query += f" WHERE state IN ({','.join('?' * len(values))})"
        params = values
    rows = await asyncio.to_thread(_read, target, f"{query} ORDER BY id DESC", params, "tasks")
    try:
        return None if rows is None else [task_record(r) for r in rows]
    except (ValueError, TypeError, AttributeError):
        return None  # a value no record takes: the ledger will say what is wrong


async def files(target: str, task_ids: Iterable[int]) -> dict[int, list[FileRecord]] | None:
    """Each task's files in order; None: ask the ledger."""
    ids = tuple(task_ids)
    query = f"SELECT * FROM files WHERE task_id IN ({','.join('?' * len(ids))})"
    rows = await asyncio.to_thread(
        _read, target, f"{query} ORDER BY task_id, position, id", ids, "files"
    )
    if rows is None:
        return None
    found: dict[int, list[FileRecord]] = {i: [] for i in ids}
    try:
        for row in rows:
            found[row.task_id].append(file_record(row))
    except (ValueError, TypeError, AttributeError):
        return None
    return found


def _read(target: str, query: str, params: tuple[Any, ...], table: str) -> list[Any] | None:
    if "://" in target:
        return None  # a database server (or a SQLAlchemy URL): the ledger's own business
    path = Path(target)
    if not path.exists():
        return []
    try:
        db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=BUSY_SECONDS)
    except sqlite3.Error:
        return None
    try:
        [revision] = db.execute("SELECT version_num FROM alembic_version").fetchone() or [None]
        if revision != SCHEMA:
            return None
        cursor = db.execute(query, params)
        names = [d[0] for d in cursor.description]
        return [_row(table, names, values) for values in cursor]
    except (sqlite3.Error, ValueError, TypeError):
        return None  # locked, not a ledger, a column not as expected: the ledger will say
    finally:
        db.close()


def _row(table: str, names: list[str], values: tuple[Any, ...]) -> SimpleNamespace:
    row = dict(zip(names, values, strict=True))
    for name in _JSON[table]:
        if isinstance(row.get(name), str):
            row[name] = json.loads(row[name])
    for name in _BOOLEAN[table]:
        if row.get(name) is not None:
            row[name] = bool(row[name])
    return SimpleNamespace(**row)
