"""The content index: finished files by SHA-256 (table ``contents``).

An entry is what was true when it was written; whoever reuses one checks the file again
(size, then digest) and drops the entry when the file has gone or changed.
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import bindparam, delete, select
from sqlalchemy.engine import Connection

from storage import dialect
from storage.db import Database
from storage.models import CONTENTS

_C = CONTENTS


@dataclass(frozen=True)
class ContentRecord:
    """One indexed file: where it is, its digest, and its size and mtime when indexed."""

    path: str
    sha256: str
    size: int
    mtime_ns: int
    origin: str
    indexed_at: float


class ContentStore:
    """Reads and writes the content index."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def add(self, path: str, sha256: str, size: int, mtime_ns: int, origin: str) -> None:
        """Record that ``path`` holds ``sha256`` (replacing what it held before)."""
        await self._db.write(_add, path, sha256.lower(), size, mtime_ns, origin, time.time())

    async def find(self, sha256: str) -> list[ContentRecord]:
        """Every indexed file said to hold ``sha256``, oldest entry first."""
        return await self._db.read(_find, sha256.lower())

    async def all(self) -> list[ContentRecord]:
        """The whole index, by path."""
        return await self._db.read(_all)

    async def drop(self, path: str) -> None:
        """Forget ``path`` (it has gone or no longer holds its digest)."""
        await self._db.write(_drop, path)


def _record(row: object) -> ContentRecord:
    return ContentRecord(
        row.path,
        row.sha256,
        row.size,
        row.mtime_ns,
        row.origin,
        row.indexed_at,  # type: ignore[attr-defined]
    )


_BY_DIGEST = select(_C).where(_C.c.sha256 == bindparam("sha256_")).order_by(_C.c.indexed_at)


@functools.cache
def _upsert(postgresql: bool) -> Any:
    """A content inserted, or replaced where its path is known (built once per backend)."""
    stmt = dialect.insert_for(postgresql, _C)
    columns = ("sha256", "size", "mtime_ns", "origin", "indexed_at")
    return stmt.on_conflict_do_update(
        index_elements=[_C.c.path], set_={c: stmt.excluded[c] for c in columns}
    )


def _add(
    conn: Connection, path: str, sha: str, size: int, mtime_ns: int, origin: str, now: float
) -> None:
    row = {"path": path, "sha256": sha, "size": size, "mtime_ns": mtime_ns, "origin": origin}
    conn.execute(_upsert(dialect.is_postgresql(conn)), {**row, "indexed_at": now})


def _find(conn: Connection, sha: str) -> list[ContentRecord]:
    return [_record(r) for r in conn.execute(_BY_DIGEST, {"sha256_": sha})]


def _all(conn: Connection) -> list[ContentRecord]:
    return [_record(r) for r in conn.execute(select(_C).order_by(_C.c.path))]


def _drop(conn: Connection, path: str) -> None:
    conn.execute(delete(_C).where(_C.c.path == path))
