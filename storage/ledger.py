"""Opening a ledger: check the target, connect, migrate, hand out the stores."""

from __future__ import annotations

import asyncio
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import URL, Connection, make_url

from storage.contents import ContentStore
from storage.db import Database
from storage.dialect import lock_for_migration
from storage.errors import (
    LedgerError,
    LedgerOpenError,
    LedgerUnavailableError,
    SchemaTooNewError,
)
from storage.files import FileStore
from storage.journal import LedgerJournal
from storage.limits import LimitStore
from storage.location import default_ledger_path
from storage.migrate import (
    HEAD_REVISION,
    create_at_head,
    current_revision,
    is_empty,
    is_known,
    upgrade_to_head,
)
from storage.notify import ChangeFeed
from storage.records import FileRecord
from storage.tasks import TaskStore
from storage.uses import UseStore
from storage.workers import WorkerStore

SQLITE_MAGIC = b"SQLite format 3\x00"


@dataclass(frozen=True)
class Ledger:
    """An open ledger: the task, file, use, limit, content and worker stores over one
    database."""

    url: URL
    path: Path | None
    db: Database
    tasks: TaskStore
    files: FileStore
    uses: UseStore
    limits: LimitStore
    contents: ContentStore
    workers: WorkerStore

    def journal(self, file: FileRecord, owner: str | None = None) -> LedgerJournal:
        """The journal of one file for the download engine: its rows only, every write
        fenced on the lease ``owner`` (None: unfenced)."""
        return LedgerJournal(self.files, self.tasks, file.id, file.task_id, owner)

    def changes(self) -> ChangeFeed:
        """A feed of task state changes as they commit, from any process (see
        ``storage.notify``): ``async with ledger.changes() as feed: heard = await
        feed.wait(seconds)`` returns early with the changed task ids on PostgreSQL
        (LISTEN/NOTIFY) and simply after ``seconds`` on SQLite, where callers poll."""
        return ChangeFeed(None if self.db.is_sqlite else self.url)

    async def close(self) -> None:
        """Release every connection."""
        await self.db.close()

    async def __aenter__(self) -> Ledger:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


async def open_ledger(target: str | os.PathLike[str] | None = None) -> Ledger:
    """Open (creating and migrating as needed) the ledger at a path or SQLAlchemy URL.

    With no target: ``$MODELHAUL_HOME/ledger.db``. A plain path, ``sqlite:///PATH`` and
    ``sqlite+aiosqlite:///PATH`` all name the same SQLite file (see ``storage.db`` for how it
    is driven). Raises ``LedgerOpenError`` (or ``SchemaTooNewError``) naming what was wrong;
    a failed open changes nothing on disk.
    """
    url, path = _parse_target(target)
    if path is not None:
        await asyncio.to_thread(_check_sqlite_file, path)
    try:
        db = Database(url)
    except (sa_exc.ArgumentError, sa_exc.NoSuchModuleError, ImportError) as e:
        hint = ""
        if isinstance(e, ImportError) and url.get_backend_name() == "postgresql":
            hint = " (pip install 'modelhaul[postgres]' for postgresql+asyncpg://)"
        raise LedgerOpenError(_where(url, path), f"unsupported database URL: {e}{hint}") from e
    try:
        await db.write(_migrate, _where(url, path))
    except asyncio.CancelledError:
        await db.close()  # after the unit under way, which the thread finishes
        raise
    except LedgerUnavailableError as e:
        await db.close()
        if path is not None:
            raise
        raise LedgerOpenError(_where(url, path), e.problem) from e
    except LedgerError:
        await db.close()
        raise
    except (sa_exc.DBAPIError, OSError) as e:
        await db.close()
        detail = getattr(e, "orig", None) or e
        first = (str(detail).strip().splitlines() or [""])[0]  # a server's DETAIL/HINT lines
        raise LedgerOpenError(_where(url, path), f"{type(detail).__name__}: {first}") from e
    except (TypeError, ValueError) as e:
        await db.close()
        if path is not None:
            raise
        # The driver refused an option of the URL's query (``?sslmode=`` is libpq's, not
        # asyncpg's): the URL is what is wrong.
        problem = f"the driver refused the URL's options ({type(e).__name__}: {e})"
        raise LedgerOpenError(_where(url, path), problem) from e
    return Ledger(
        url=url,
        path=path,
        db=db,
        tasks=TaskStore(db),
        files=FileStore(db),
        uses=UseStore(db),
        limits=LimitStore(db),
        contents=ContentStore(db),
        workers=WorkerStore(db),
    )


def _migrate(conn: Connection, where: str) -> None:
    if current_revision(conn) == HEAD_REVISION:
        return  # the usual case, without waiting for anyone's lock
    # Many workers may open a fresh ledger at the same moment: one migrates, the others wait
    # here and then find the schema at head (READ COMMITTED: the next read sees its commit).
    lock_for_migration(conn)
    current = current_revision(conn)
    if current == HEAD_REVISION:
        return
    if current is None and is_empty(conn):
        create_at_head(conn)
        return
    if current is not None and not is_known(current):
        raise SchemaTooNewError(where, current)
    upgrade_to_head(conn)


def _parse_target(target: str | os.PathLike[str] | None) -> tuple[URL, Path | None]:
    if target is None:
        return _sqlite_url(default_ledger_path())
    text = os.fspath(target)
    if not text.strip():
        raise LedgerOpenError(repr(text), "empty ledger path or URL")
    if "://" not in text:
        return _sqlite_url(Path(text))
    try:
        url = make_url(text)
    except (sa_exc.ArgumentError, ValueError) as e:
        # Not parsed, so its password cannot be hidden the usual way: cut out "user:…@".
        masked = _masked(text)
        raise LedgerOpenError(masked, f"malformed database URL ({_masked(str(e))})") from e
    if url.get_backend_name() != "sqlite":
        return url, None
    if not url.database or url.database == ":memory:":
        raise LedgerOpenError(
            text, "an in-memory SQLite ledger cannot be shared; give a file path instead"
        )
    return _sqlite_url(Path(url.database))


def _sqlite_url(path: Path) -> tuple[URL, Path]:
    path = path.expanduser().absolute()
    return URL.create("sqlite", database=str(path)), path


def _masked(text: str) -> str:
    """``text`` with the password of any ``scheme://user:password@`` in it replaced."""
    return re.sub(r"(://[^/@:\s]*):[^@\s]*@", r"\1:***@", text)


def _where(url: URL, path: Path | None) -> str:
    return str(path) if path is not None else url.render_as_string(hide_password=True)


def _check_sqlite_file(path: Path) -> None:
    """Refuse a path SQLite would choke on, with a message that says why (blocking I/O)."""
    folder = path.parent
    if path.is_dir():
        raise LedgerOpenError(path, "it is a folder, not a database file")
    if path.exists():
        with path.open("rb") as f:
            head = f.read(len(SQLITE_MAGIC))
        if head and head != SQLITE_MAGIC:
            raise LedgerOpenError(
                path, f"it is not a SQLite database (it starts with {head[:16]!r})"
            )
        if not os.access(path, os.R_OK | os.W_OK):
            raise LedgerOpenError(path, "the file is not readable and writable by this user")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise LedgerOpenError(path, f"cannot create folder {folder}: {e.strerror}") from e
    # SQLite in WAL mode needs to create -wal and -shm files beside the database, so the
    # folder itself must be writable; probing with a real file is the only honest test.
    try:
        fd, probe = tempfile.mkstemp(prefix=".modelhaul-probe-", dir=folder)
    except OSError as e:
        raise LedgerOpenError(path, f"folder {folder} is not writable: {e.strerror}") from e
    os.close(fd)
    os.unlink(probe)
