"""File and chunk rows: what a task fetches, and the durable progress of every byte range."""

from __future__ import annotations

import functools
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from sqlalchemy import bindparam, delete, func, insert, select, update
from sqlalchemy.engine import Connection

from storage import dialect
from storage.db import Database
from storage.errors import LeaseLostError
from storage.models import CHUNKS, FILES, TASKS
from storage.records import (
    ChunkRecord,
    FileCheckpoint,
    FileRecord,
    FileState,
    NewFile,
    file_record,
)

_F = FILES
_C = CHUNKS
_T = TASKS

# The statements every file write runs, built once. Building a statement (and its cache key)
# cost more CPU than running it: on 200 small files, the ledger's thread spent most of its
# time in SQLAlchemy's constructors, and it shares the interpreter with the transfers.
_FENCE = (
    select(_T.c.id, _T.c.lease_owner, _T.c.last_owner)
    .where(
        _T.c.id.in_(select(_F.c.task_id).where(_F.c.id.in_(bindparam("file_ids", expanding=True))))
    )
    .order_by(_T.c.id)
    .with_for_update(of=_T)
)
# SET is what the parameters name (the file's columns), WHERE the file's id.
_UPDATE_FILE = update(_F).where(_F.c.id == bindparam("file_id_")).returning(*_F.c)
_TOTALS = (
    select(
        _F.c.task_id,
        func.count(),
        func.sum(_F.c.size),
        func.sum(_F.c.downloaded_bytes),
        func.sum((_F.c.state == FileState.COMPLETED.value).cast(_F.c.position.type)),
        func.sum(_F.c.size.is_(None).cast(_F.c.position.type)),
    )
    .where(_F.c.task_id.in_(bindparam("task_ids", expanding=True)))
    .group_by(_F.c.task_id)
)
_SET_TOTALS = update(_T).where(_T.c.id == bindparam("task_id_"))
_FILE = select(_F).where(_F.c.id == bindparam("file_id_"))
_FILES_OF_TASK = select(_F).where(_F.c.task_id == bindparam("task_id_")).order_by(_F.c.position)
_CHUNKS_OF_FILE = select(_C).where(_C.c.file_id == bindparam("file_id_")).order_by(_C.c.start)
_DROP_CHUNKS = delete(_C).where(_C.c.file_id == bindparam("file_id_"))
_CHECKPOINT_FILE = update(_F).where(_F.c.id == bindparam("file_id_")).returning(_F.c.task_id)


@functools.cache
def _chunk_upsert(postgresql: bool) -> Any:
    """Chunks inserted, or their progress updated where ``(file_id, start)`` exists."""
    stmt = dialect.insert_for(postgresql, _C)
    return stmt.on_conflict_do_update(
        index_elements=[_C.c.file_id, _C.c.start],
        set_={
            "end": stmt.excluded.end,
            "done": stmt.excluded.done,
            "xxh3": stmt.excluded.xxh3,
            "sources": stmt.excluded.sources,
        },
    )


class FileStore:
    """Queries over the ``files`` and ``chunks`` tables."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def add(self, task_id: int, files: Sequence[NewFile]) -> list[FileRecord]:
        """Attach files to a task (skipping relpaths it already has); returns all its files."""
        return await self._db.write(_add, task_id, list(files), time.time())

    async def of_task(self, task_id: int) -> list[FileRecord]:
        """The task's files in the order the source gave them."""
        return await self._db.read(_of_task, task_id)

    async def get(self, file_id: int) -> FileRecord:
        """One file by id."""
        return await self._db.read(_get, file_id)

    async def update(self, file_id: int, *, owner: str | None = None, **fields: Any) -> FileRecord:
        """Set columns of one file (probe results, state, digests, dirty flag), refreshing the
        task's totals in the same transaction; returns the new record. With ``owner``, only
        while that lease still holds the task (else ``LeaseLostError``)."""
        return await self._db.write(_update, file_id, _settable(fields), time.time(), owner)

    async def update_many(
        self, changes: Mapping[int, Mapping[str, Any]], *, owner: str | None = None
    ) -> None:
        """``update`` of many files in one transaction (what a task's format checks learned
        of each file): one commit instead of one per file, fenced as in ``update``."""
        rows = {file_id: _settable(fields) for file_id, fields in changes.items()}
        if rows:
            await self._db.write(_update_many, rows, time.time(), owner)

    async def chunks(self, file_id: int) -> list[ChunkRecord]:
        """The file's chunks in byte order."""
        return await self._db.read(_chunks, file_id)

    async def replace_chunks(
        self,
        file_id: int,
        chunks: Sequence[ChunkRecord],
        *,
        owner: str | None = None,
        **file_fields: Any,
    ) -> FileRecord:
        """Throw away the file's chunks and write a new plan (a first plan, or a restart after
        the remote file changed), updating file columns in the same transaction. ``owner``
        fences it as in ``update``."""
        _check_fields(file_fields)
        return await self._db.write(
            _replace_chunks, file_id, list(chunks), file_fields, time.time(), owner
        )

    async def checkpoint(
        self, batch: Sequence[FileCheckpoint], *, owner: str | None = None
    ) -> None:
        """Record many chunks' durable progress in one transaction.

        The caller has already synced the data these numbers describe: the ledger may lag
        the disk, never lead it. New chunks (from work stealing) and changed ends are upserted
        by ``(file_id, start)``. ``owner`` fences it as in ``update``.
        """
        if batch:
            await self._db.write(_checkpoint, list(batch), time.time(), owner)

    async def remove(self, file_ids: Iterable[int]) -> None:
        """Forget files (and, by cascade, their chunks)."""
        await self._db.write(_remove, list(file_ids), time.time())


# Columns a caller may set: the prebuilt UPDATE takes its SET from the parameters, where a
# name that is no column would be dropped without a word.
_SETTABLE = frozenset(_F.c.keys()) - {"id", "task_id", "updated_at"}


def _check_fields(fields: Mapping[str, Any]) -> None:
    if unknown := sorted(set(fields) - _SETTABLE):
        raise ValueError(f"not settable columns of a file: {', '.join(unknown)}")


def _settable(fields: Mapping[str, Any]) -> dict[str, Any]:
    """``fields`` as the UPDATE takes them: only settable columns, a state as its value."""
    _check_fields(fields)
    out = dict(fields)
    if "state" in out:
        out["state"] = FileState(out["state"]).value
    return out


# --- units of work ----------------------------------------------------------------------------


def _add(conn: Connection, task_id: int, files: list[NewFile], now: float) -> list[FileRecord]:
    # The task's row lock makes "which relpaths does it have" and the insert one step: two
    # processes resolving the same task would otherwise both insert (a unique violation).
    conn.execute(select(_T.c.id).where(_T.c.id == task_id).with_for_update())
    known = {r.relpath for r in conn.execute(select(_F.c.relpath).where(_F.c.task_id == task_id))}
    fresh = [f for f in files if f.relpath not in known]
    if fresh:
        conn.execute(
            insert(_F),
            [_new_file_row(task_id, len(known) + i, f, now) for i, f in enumerate(fresh)],
        )
    _refresh_task_totals(conn, [task_id], now)
    return _of_task(conn, task_id)


def _of_task(conn: Connection, task_id: int) -> list[FileRecord]:
    return [file_record(r) for r in conn.execute(_FILES_OF_TASK, {"task_id_": task_id})]


def _get(conn: Connection, file_id: int) -> FileRecord:
    return file_record(conn.execute(_FILE, {"file_id_": file_id}).one())


def _fence(conn: Connection, file_ids: list[int], owner: str | None) -> None:
    """Lock the tasks of ``file_ids`` for this transaction and refuse the write unless
    ``owner`` runs them, or ran them last and nobody has claimed them since (a paused or
    cancelled task's runner makes its final checkpoint); ``owner`` None: lock only.

    The lock (``FOR UPDATE`` on the task rows, in id order; SQLite's ``BEGIN IMMEDIATE``
    already holds the whole database) keeps a claim by another worker from committing
    between this check and the write, and serializes the task totals that every file
    write recomputes: under READ COMMITTED two checkpoints of one task would otherwise each
    sum the other's files as they were before, and the later one would write stale totals.
    """
    rows = conn.execute(_FENCE, {"file_ids": list(file_ids)}).all()
    if owner is None:
        return
    for row in rows:
        holder = row.lease_owner if row.lease_owner is not None else row.last_owner
        if holder != owner:
            raise LeaseLostError(row.id, owner, row.lease_owner)


def _update(
    conn: Connection, file_id: int, fields: dict[str, Any], now: float, owner: str | None = None
) -> FileRecord:
    _fence(conn, [file_id], owner)
    [row] = _set_files(conn, {file_id: fields}, now)
    return file_record(row)


def _update_many(
    conn: Connection, rows: dict[int, dict[str, Any]], now: float, owner: str | None
) -> None:
    _fence(conn, sorted(rows), owner)
    _set_files(conn, rows, now)


def _set_files(conn: Connection, rows: dict[int, dict[str, Any]], now: float) -> list[Any]:
    """Update each file's columns; the totals of the tasks where a summed column changed
    follow. Returns the updated rows, in the order given."""
    updated, task_ids = [], set()
    for file_id, fields in rows.items():
        row = conn.execute(_UPDATE_FILE, {**fields, "updated_at": now, "file_id_": file_id}).one()
        updated.append(row)
        if not _TOTALS_FROM.isdisjoint(fields):
            task_ids.add(row.task_id)
    if task_ids:
        _refresh_task_totals(conn, sorted(task_ids), now)
    return updated


def _chunks(conn: Connection, file_id: int) -> list[ChunkRecord]:
    return [_chunk_record(r) for r in conn.execute(_CHUNKS_OF_FILE, {"file_id_": file_id})]


def _replace_chunks(
    conn: Connection,
    file_id: int,
    chunks: list[ChunkRecord],
    file_fields: dict[str, Any],
    now: float,
    owner: str | None,
) -> FileRecord:
    _fence(conn, [file_id], owner)
    conn.execute(_DROP_CHUNKS, {"file_id_": file_id})
    if chunks:
        conn.execute(insert(_C), [_chunk_row(c) for c in chunks])
    durable = sum(c.done for c in chunks)
    return _update(conn, file_id, {**file_fields, "downloaded_bytes": durable}, now)


def _checkpoint(
    conn: Connection, batch: list[FileCheckpoint], now: float, owner: str | None
) -> None:
    _fence(conn, sorted({cp.file_id for cp in batch}), owner)
    rows = [_chunk_row(c) for cp in batch for c in cp.chunks]
    if rows:
        conn.execute(_chunk_upsert(dialect.is_postgresql(conn)), rows)
    task_ids = []
    for cp in batch:
        values: dict[str, Any] = {"downloaded_bytes": cp.downloaded_bytes, "updated_at": now}
        if cp.part_mtime_ns is not None:
            values["part_mtime_ns"] = cp.part_mtime_ns
        if cp.part_size is not None:
            values["part_size"] = cp.part_size
        values["file_id_"] = cp.file_id
        task_ids.append(conn.execute(_CHECKPOINT_FILE, values).scalar_one())
    _refresh_task_totals(conn, sorted(set(task_ids)), now)


def _remove(conn: Connection, file_ids: list[int], now: float) -> None:
    _fence(conn, file_ids, None)
    task_ids = {r.task_id for r in conn.execute(select(_F.c.task_id).where(_F.c.id.in_(file_ids)))}
    conn.execute(delete(_F).where(_F.c.id.in_(file_ids)))
    _refresh_task_totals(conn, sorted(task_ids), now)


# The file columns a task's totals are summed from: an update of none of them (a digest, a
# format summary, the dirty flag) leaves the totals as they are and is spared the sums.
_TOTALS_FROM = frozenset({"size", "state", "downloaded_bytes"})


def _refresh_task_totals(conn: Connection, task_ids: list[int], now: float) -> None:
    """Derive tasks' byte and file counts from their files, so the two can never drift."""
    totals = {r[0]: r[1:] for r in conn.execute(_TOTALS, {"task_ids": list(task_ids)})}
    for task_id in task_ids:
        count, total, done, completed, unknown = totals.get(task_id, (0, None, 0, 0, 0))
        conn.execute(
            _SET_TOTALS,
            {
                "task_id_": task_id,
                "files_total": count,
                "files_done": completed or 0,
                "total_bytes": None if (unknown or not count) else total,
                "downloaded_bytes": done or 0,
                "updated_at": now,
            },
        )


def _new_file_row(task_id: int, position: int, f: NewFile, now: float) -> dict[str, Any]:
    return {
        "task_id": task_id,
        "position": position,
        "url": f.url,
        "relpath": f.relpath,
        "local_path": f.local_path,
        "size": f.size,
        "expected_sha256": f.expected_sha256,
        "etag": f.etag,
        "last_modified": f.last_modified,
        "state": FileState.PENDING.value,
        "downloaded_bytes": 0,
        "block_size": f.block_size,
        "dirty": False,
        "meta": dict(f.meta),
        "updated_at": now,
    }


def _chunk_row(c: ChunkRecord) -> dict[str, Any]:
    return {
        "file_id": c.file_id,
        "start": c.start,
        "end": c.end,
        "done": c.done,
        "xxh3": c.xxh3,
        "sources": [[at, url] for at, url in c.sources] or None,
    }


def _chunk_record(row: Any) -> ChunkRecord:
    return ChunkRecord(
        file_id=row.file_id,
        start=row.start,
        end=row.end,
        done=row.done,
        xxh3=bytes(row.xxh3),
        sources=_sources(row.sources, row.start, row.start + row.done),
    )


def _sources(value: Any, start: int, end: int) -> tuple[tuple[int, str], ...]:
    """The recorded sources, or none where the record is not their shape: (offset, url)
    pairs with increasing offsets inside the done bytes ``[start, end)``. A ledger is a file
    anyone may have edited; unknown sources only make a digest mismatch costlier."""
    if not isinstance(value, list):
        return ()
    out: list[tuple[int, str]] = []
    for item in value:
        if not (isinstance(item, list) and len(item) == 2):
            return ()
        at, url = item
        if not isinstance(at, int) or isinstance(at, bool) or not isinstance(url, str):
            return ()
        if not start <= at < end or (out and at <= out[-1][0]) or len(url) > 8192:
            return ()
        out.append((at, url))
    return tuple(out)
