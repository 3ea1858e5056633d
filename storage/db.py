"""The one place that opens the database and sets its pragmas.

Every ledger operation is a *unit of work*: a plain function over a SQLAlchemy ``Connection``
that runs inside one transaction. ``Database.write``/``read`` run it off the event loop:

- SQLite (the default) runs the whole unit in one hop to a dedicated thread. SQLite is an
  in-process library whose statements take microseconds; going through an async driver
  instead costs one thread hop per DBAPI call (three to four per statement), which measured
  4.6 ms per state transition here against 0.3 ms for one hop per transaction.
- Any other backend (e.g. ``postgresql+asyncpg://``) uses SQLAlchemy's asyncio engine and
  ``run_sync``, so the same unit-of-work code serves both.

SQLite write transactions start with ``BEGIN IMMEDIATE``: a unit that reads and then writes
takes the lock up front (waiting under ``busy_timeout``), so it cannot fail half-way with
``SQLITE_BUSY`` when another process wrote in between. Reads use deferred snapshots and never
block writers (WAL).
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec, TypeVar

from sqlalchemy import Engine, create_engine, event
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import URL, Connection

from storage.errors import LedgerUnavailableError

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

BUSY_TIMEOUT_MS = 30_000
CONNECT_TIMEOUT = 10.0  # seconds, to a database server
READERS = 4

P = ParamSpec("P")
T = TypeVar("T")
Unit = Callable[Concatenate[Connection, P], T]


class Database:
    """Runs units of work against one ledger database."""

    def __init__(self, url: URL) -> None:
        self.url = url
        self.is_sqlite = url.get_backend_name() == "sqlite"
        # The largest id a row can have: SQLite's integers are 64-bit, the ``Integer`` primary
        # keys elsewhere (PostgreSQL's serial) 32-bit. A larger id finds nothing, at once.
        self.max_id = 2**63 - 1 if self.is_sqlite else 2**31 - 1
        self._async: AsyncEngine | None = None  # other backends: SQLAlchemy asyncio
        self._closed = False
        if self.is_sqlite:
            sync_url = url.set(drivername="sqlite+pysqlite")
            args = {"check_same_thread": False, "timeout": BUSY_TIMEOUT_MS / 1000}
            # Units always commit or roll back themselves, so the pool's own rollback on
            # return would only cost a call.
            common = {"connect_args": args, "max_overflow": 0, "pool_reset_on_return": None}
            self._writer = create_engine(sync_url, pool_size=1, **common)
            self._reader = create_engine(sync_url, pool_size=READERS, **common)
            _configure_sqlite(self._writer, begin="BEGIN IMMEDIATE")
            _configure_sqlite(self._reader, begin="BEGIN")
            # One writer thread: writes queue here instead of contending for SQLite's lock
            # with ourselves; other processes are kept out by the lock itself.
            self._write_thread = _Threads(1, "ledger-write")
            self._read_threads = _Threads(READERS, "ledger-read")
        else:
            from sqlalchemy.ext.asyncio import create_async_engine

            # pre_ping: a pooled connection that died with its server (a restart) is
            # replaced on checkout instead of failing the next call.
            options: dict[str, Any] = {"pool_pre_ping": True}
            if url.get_driver_name() == "asyncpg":
                # A server that does not answer at all must not hold a call for asyncpg's
                # default minute: it is an outage, reported as one.
                options["connect_args"] = {"timeout": CONNECT_TIMEOUT}
            self._async = create_async_engine(url, **options)

    async def write(self, unit: Unit[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run ``unit(conn, ...)`` in a write transaction; committed unless it raises. A
        database that cannot take the write (disk full, read-only, I/O error) raises
        ``LedgerUnavailableError``; so does a ledger already closed (a late writer, such as a
        runner still stopping as its process is torn down)."""
        if self._closed:
            raise self._closed_error(writing=True)
        try:
            if self._async is not None:
                async with self._async.begin() as conn:
                    return await conn.run_sync(unit, *args, **kwargs)
            return await self._write_thread.run(_in_transaction, self._writer, unit, args, kwargs)
        except sa_exc.OperationalError as e:
            raise self._unavailable(e, writing=True) from e
        except (sa_exc.DBAPIError, OSError, TimeoutError) as e:
            if self._async is None or not _is_outage(e):
                raise
            raise self._unavailable(e, writing=True) from e

    async def read(self, unit: Unit[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run ``unit(conn, ...)`` on a read snapshot (never committed)."""
        if self._closed:
            raise self._closed_error(writing=False)
        try:
            if self._async is not None:
                async with self._async.connect() as conn:
                    return await conn.run_sync(unit, *args, **kwargs)
            return await self._read_threads.run(_in_snapshot, self._reader, unit, args, kwargs)
        except sa_exc.OperationalError as e:
            raise self._unavailable(e, writing=False) from e
        except (sa_exc.DBAPIError, OSError, TimeoutError) as e:
            if self._async is None or not _is_outage(e):
                raise
            raise self._unavailable(e, writing=False) from e

    def _closed_error(self, *, writing: bool) -> LedgerUnavailableError:
        where = self.url.database if self.is_sqlite else self.url.render_as_string()
        return LedgerUnavailableError(str(where), writing, "the ledger is closed")

    def _unavailable(self, error: Exception, *, writing: bool) -> Exception:
        if self.is_sqlite:
            assert isinstance(error, sa_exc.DBAPIError)
            return LedgerUnavailableError(str(self.url.database), writing, str(error.orig or error))
        # A server's errors name their class and may run over several lines (DETAIL, HINT):
        # the first line says what happened.
        cause = getattr(error, "orig", None) or error
        cause = cause.__cause__ or cause  # asyncpg's own, under SQLAlchemy's adapter class
        text = str(cause).strip().splitlines()[0] if str(cause).strip() else ""
        detail = f"{type(cause).__name__}: {text}" if text else type(cause).__name__
        where = self.url.render_as_string(hide_password=True)
        problem = f"the database server is unreachable ({detail})"
        return LedgerUnavailableError(where, writing, problem, outage=True)

    async def close(self) -> None:
        """Dispose the engines and stop the threads; closing twice is harmless."""
        if self._closed:
            return
        self._closed = True
        if self._async is not None:
            await self._async.dispose()
            return
        await self._write_thread.run(self._writer.dispose)
        await self._read_threads.run(self._reader.dispose)
        self._write_thread.stop()
        self._read_threads.stop()


class _Threads:
    """A few daemon threads taking calls from one queue.

    Leaner than ``run_in_executor`` (one future, one ``call_soon_threadsafe``): a ledger call
    is a few hundred microseconds, so the hop itself is a visible part of it (68 us against
    130 us measured here).
    """

    def __init__(self, count: int, name: str) -> None:
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._stopped = False
        self._threads = [
            threading.Thread(target=self._serve, name=f"{name}-{i}", daemon=True)
            for i in range(count)
        ]
        for thread in self._threads:
            thread.start()

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        if self._stopped:
            raise RuntimeError("the ledger is closed")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._queue.put((loop, future, fn, args))
        return await future

    def stop(self) -> None:
        self._stopped = True
        for _ in self._threads:
            self._queue.put(None)

    def _serve(self) -> None:
        while (job := self._queue.get()) is not None:
            loop, future, fn, args = job
            try:
                result = fn(*args)
            except BaseException as e:  # handed to the awaiting coroutine, never lost
                _hand_back(loop, future, None, e)
            else:
                _hand_back(loop, future, result, None)


def _hand_back(
    loop: asyncio.AbstractEventLoop,
    future: asyncio.Future[Any],
    result: Any,
    error: BaseException | None,
) -> None:
    # The loop may have closed while the call ran (its caller was cancelled and the program
    # or test moved on): nobody can await the answer, and the thread must live on.
    with contextlib.suppress(RuntimeError):
        loop.call_soon_threadsafe(_settle, future, result, error)


def _settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.cancelled():  # the caller gave up waiting; the work itself already happened
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


def _is_outage(error: BaseException) -> bool:
    """Whether a database server's error means the connection (not the statement) failed:
    the server is down, restarting or unreachable, so the same call may work later. A
    statement the server refused (a bug, a constraint) is not one and propagates as is."""
    if isinstance(error, (OSError, TimeoutError, sa_exc.InterfaceError)):
        return True
    if isinstance(error, sa_exc.DBAPIError):
        if error.connection_invalidated:
            return True
        # asyncpg's own exceptions, as SQLAlchemy's adapter carries them: a connection that
        # closed under the call, or a server shutting down / starting up (SQLSTATE class 08,
        # 57P01-57P03).
        cause = getattr(error.orig, "__cause__", None) or error.orig
        code = getattr(cause, "sqlstate", None) or ""
        # Also: out of resources (53xxx: too many connections, disk full) and a read-only
        # server (25006: a standby after a failover): the same call may work later.
        return isinstance(cause, (OSError, TimeoutError)) or code.startswith(
            ("08", "57P", "53", "25006")
        )
    return False


def _in_transaction(engine: Engine, unit: Unit[..., T], args: Any, kwargs: Any) -> T:
    with engine.begin() as conn:
        return unit(conn, *args, **kwargs)


def _in_snapshot(engine: Engine, unit: Unit[..., T], args: Any, kwargs: Any) -> T:
    with engine.connect() as conn:
        return unit(conn, *args, **kwargs)


def _configure_sqlite(engine: Engine, *, begin: str) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
        # Take transaction control away from the driver so that our BEGIN is the one used.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA journal_mode = WAL")
        # WAL + NORMAL: a power cut may lose the last commits but never corrupts; the ledger
        # then under-reports progress, which is the safe direction.
        cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn) -> None:  # type: ignore[no-untyped-def]
        # Straight to the driver: this runs on every transaction and the statement needs
        # none of SQLAlchemy's execution machinery.
        conn.connection.driver_connection.execute(begin)
