"""When cached models were last used (for least-recently-used eviction)."""

from __future__ import annotations

import time

from sqlalchemy import delete, select
from sqlalchemy.engine import Connection

from storage import dialect
from storage.db import Database
from storage.models import CACHE_USES

_U = CACHE_USES


class UseStore:
    """Last-use times keyed by cache entry."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def touch(self, key: str, at: float | None = None) -> None:
        """Record a use of ``key`` now (or at ``at``)."""
        await self._db.write(_touch, key, time.time() if at is None else at)

    async def all(self) -> dict[str, float]:
        """Every recorded last use."""
        return await self._db.read(_all)

    async def forget(self, key: str) -> None:
        """Drop ``key`` (its entry was deleted)."""
        await self._db.write(_forget, key)


def _touch(conn: Connection, key: str, at: float) -> None:
    stmt = dialect.insert(conn, _U).values(key=key, last_used=at)
    conn.execute(stmt.on_conflict_do_update(index_elements=[_U.c.key], set_={"last_used": at}))


def _all(conn: Connection) -> dict[str, float]:
    return {row.key: row.last_used for row in conn.execute(select(_U))}


def _forget(conn: Connection, key: str) -> None:
    conn.execute(delete(_U).where(_U.c.key == key))
