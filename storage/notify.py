"""Hearing of task state changes as they commit, from any process on any host.

On PostgreSQL every state change (``storage.moves``) sends ``NOTIFY modelhaul_tasks, '<task
id>'`` in its transaction; a ``ChangeFeed`` holds one dedicated asyncpg connection that
``LISTEN``s on that channel, so a process running a task hears a pause or cancel made
anywhere within a round trip instead of at its next poll. On SQLite there is nothing to
hear: ``wait`` just waits out its timeout, and callers poll as before.

How a caller uses it (e.g. a runner that polls its tasks' states every ``watch_seconds``)::

    async with ledger.changes() as feed:
        while running:
            heard = await feed.wait(watch_seconds)  # returns early when something changed
            if heard.missed or heard.task_ids & my_task_ids:
                states = await ledger.tasks.states(my_task_ids)   # the ledger decides
                ...

A notification is only a hint to look: the ledger's rows stay the truth, so a feed that
lost its connection (the server restarted) reconnects in the background and says
``missed=True`` once, which means "anything may have changed meanwhile: read again".
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from typing import Any

from sqlalchemy.engine import URL

from storage.dialect import CHANNEL

log = logging.getLogger(__name__)

CONNECT_TIMEOUT = 10.0  # seconds
FIRST_LISTEN = 2.0  # seconds entering waits for it: the caller's polling covers the rest
KEEPALIVE = 5.0  # seconds between pings of an idle listening connection
RETRY_DELAYS = (0.2, 0.5, 1.0, 2.0)  # between reconnection attempts (the last repeats)
MAX_PENDING = 10_000  # ids held between two waits; past it, just "missed"


@dataclass(frozen=True)
class TaskChanges:
    """What one ``ChangeFeed.wait`` heard: the ids of tasks whose state changed, and
    ``missed`` when notifications may have been lost (re-read everything you watch)."""

    task_ids: frozenset[int] = frozenset()
    missed: bool = False

    def __bool__(self) -> bool:
        return self.missed or bool(self.task_ids)


class ChangeFeed:
    """Task state changes of one ledger as they commit (``Ledger.changes()``); an async
    context manager. ``url`` None (SQLite): a feed that never hears anything."""

    def __init__(self, url: URL | None) -> None:
        self._url = url
        self._pending: set[int] = set()
        self._missed = False
        self._woken = asyncio.Event()
        self._listener: asyncio.Task[None] | None = None
        self._connected = asyncio.Event()

    async def __aenter__(self) -> ChangeFeed:
        if self._url is not None and self._listener is None:
            self._listener = asyncio.create_task(self._listen(), name="ledger-changes")
            # Wait (briefly) for the first LISTEN so that a change committed after entering
            # is heard; a server that is down now leaves the feed retrying, and polling
            # callers poll meanwhile. Cancelled while waiting: nothing is left running.
            try:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._connected.wait(), FIRST_LISTEN)
            except BaseException:
                await self.close()
                raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def wait(self, seconds: float) -> TaskChanges:
        """Wait up to ``seconds`` for changes; returns as soon as there are some
        (everything heard since the last call), else an empty ``TaskChanges`` when the time
        is up. On SQLite it always waits the whole time."""
        if not (self._pending or self._missed):
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._woken.wait(), max(0.0, seconds))
        heard = TaskChanges(frozenset(self._pending), self._missed)
        self._pending.clear()
        self._missed = False
        self._woken.clear()
        return heard

    async def close(self) -> None:
        """Stop listening and close the connection; closing twice is harmless."""
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await listener

    # --- the listening connection -------------------------------------------------------

    def _heard(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        # Anyone who can connect may NOTIFY on our channel: a payload that is not a task id
        # is ignored, and a flood only ever costs one "re-read everything".
        if payload.isascii() and payload.isdigit() and len(payload) <= 19:
            if len(self._pending) < MAX_PENDING:
                self._pending.add(int(payload))
            else:
                self._missed = True
            self._woken.set()

    async def _listen(self) -> None:
        import asyncpg

        assert self._url is not None
        params = _connect_params(self._url)
        attempt = 0
        while True:
            conn = None
            try:
                conn = await asyncpg.connect(**params, timeout=CONNECT_TIMEOUT)
                lost = asyncio.Event()
                conn.add_termination_listener(lambda _c, lost=lost: lost.set())
                await conn.add_listener(CHANNEL, self._heard)
                if attempt:  # whatever was sent while we were away is gone
                    self._missed = True
                    self._woken.set()
                    log.info("ledger change feed reconnected")
                attempt = 0
                self._connected.set()
                while not lost.is_set():
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(lost.wait(), KEEPALIVE)
                    if not lost.is_set():
                        await conn.fetchval("SELECT 1", timeout=CONNECT_TIMEOUT)
            except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as e:
                log.debug("ledger change feed: %s", e)
            except (TypeError, ValueError) as e:  # the URL itself: retrying cannot help
                log.warning("ledger change feed stopped: %s", e)
                return
            finally:
                if conn is not None:
                    with contextlib.suppress(Exception):
                        conn.terminate()
            attempt += 1
            await asyncio.sleep(RETRY_DELAYS[min(attempt, len(RETRY_DELAYS)) - 1])


def _connect_params(url: URL) -> dict[str, Any]:
    """asyncpg.connect's arguments for ``url``, read as the ledger's own engine reads it
    (its query, e.g. ``?ssl=require``, included), less SQLAlchemy's own options."""
    from sqlalchemy.dialects.postgresql.asyncpg import PGDialect_asyncpg

    _args, params = PGDialect_asyncpg().create_connect_args(url)
    for own in ("prepared_statement_cache_size", "prepared_statement_name_func"):
        params.pop(own, None)
    return params
