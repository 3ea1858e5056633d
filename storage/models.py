"""The ledger's tables as SQLAlchemy ORM models.

Times are UNIX seconds (float, UTC): they sort, subtract and compare with heartbeats without
time-zone conversions, and every backend stores them the same way.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# Explicit constraint names so that Alembic can alter them on SQLite (batch mode) and the
# migrated schema compares equal to these models.
NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    """Declarative base holding the ledger's metadata."""

    metadata = MetaData(naming_convention=NAMING)


class Task(Base):
    """One user request (a URL, a repo, an Ollama model) and its single state."""

    __tablename__ = "tasks"
    __table_args__ = (
        # The scheduler's query: next pending by priority, then age (id is monotonic).
        Index("ix_tasks_queue", "state", "priority", "id"),
        Index("ix_tasks_spec_key", "spec_key"),
        # Observers (the server, `watch`) poll for tasks changed since their last look.
        Index("ix_tasks_updated_at", "updated_at"),
        {"sqlite_autoincrement": True},  # ids are never reused, so "task 7" stays task 7
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    provider: Mapped[str] = mapped_column(String(32))
    source: Mapped[str] = mapped_column(Text)
    revision: Mapped[str | None] = mapped_column(Text)
    patterns: Mapped[list[str] | None] = mapped_column(JSON)
    destination: Mapped[str] = mapped_column(Text)
    options: Mapped[dict[str, Any]] = mapped_column(JSON)
    spec_key: Mapped[str] = mapped_column(String(64))
    label: Mapped[str] = mapped_column(Text)
    state: Mapped[str] = mapped_column(String(16))
    priority: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text)
    total_bytes: Mapped[int | None] = mapped_column(BigInteger)
    downloaded_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    files_total: Mapped[int] = mapped_column(Integer, default=0)
    files_done: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[float] = mapped_column(Float)
    updated_at: Mapped[float] = mapped_column(Float)
    started_at: Mapped[float | None] = mapped_column(Float)
    finished_at: Mapped[float | None] = mapped_column(Float)
    lease_owner: Mapped[str | None] = mapped_column(String(255))
    lease_host: Mapped[str | None] = mapped_column(String(255))
    lease_pid: Mapped[int | None] = mapped_column(Integer)
    lease_started: Mapped[float | None] = mapped_column(Float)
    heartbeat_at: Mapped[float | None] = mapped_column(Float)
    # The last lease holder, kept when the lease is cleared (a pause, a cancel): it alone may
    # still record its final checkpoint, until another process claims the task.
    last_owner: Mapped[str | None] = mapped_column(String(255))
    # The host whose disk holds the task's files: set by each run as it starts writing them,
    # kept when it ends. With per-host destinations it says where a finished file is, and a
    # takeover elsewhere that finds no .part knows whose disk it was on.
    files_host: Mapped[str | None] = mapped_column(String(255))


class File(Base):
    """One remote object written to one local path; a task has one or more."""

    __tablename__ = "files"
    __table_args__ = (
        UniqueConstraint("task_id", "relpath"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    task_id: Mapped[int] = mapped_column(ForeignKey("tasks.id", ondelete="CASCADE"))
    position: Mapped[int] = mapped_column(Integer, default=0)
    url: Mapped[str] = mapped_column(Text)
    relpath: Mapped[str] = mapped_column(Text)
    local_path: Mapped[str] = mapped_column(Text)
    size: Mapped[int | None] = mapped_column(BigInteger)
    expected_sha256: Mapped[str | None] = mapped_column(String(64))
    etag: Mapped[str | None] = mapped_column(Text)
    last_modified: Mapped[str | None] = mapped_column(Text)
    accept_ranges: Mapped[bool | None] = mapped_column(Boolean)
    state: Mapped[str] = mapped_column(String(16))
    downloaded_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    sha256: Mapped[str | None] = mapped_column(String(64))
    block_size: Mapped[int] = mapped_column(Integer)
    # What the .part looked like at the last checkpoint; a mismatch on resume means it was
    # touched (or torn) after the ledger last spoke, so its blocks are re-hashed.
    part_mtime_ns: Mapped[int | None] = mapped_column(BigInteger)
    part_size: Mapped[int | None] = mapped_column(BigInteger)
    # Set while a process writes the .part, cleared by a clean stop: still set on resume
    # means the last run ended uncleanly.
    dirty: Mapped[bool] = mapped_column(Boolean, default=False)
    error: Mapped[str | None] = mapped_column(Text)
    meta: Mapped[dict[str, Any]] = mapped_column(JSON)
    updated_at: Mapped[float] = mapped_column(Float)


class Chunk(Base):
    """A byte range ``[start, end)`` of a file, fetched by one range request at a time.

    ``done`` counts the durable bytes from ``start``, and ``xxh3`` holds one 8-byte XXH3-64
    digest per block that ``done`` reaches into: where ``done`` ends mid-block (a block
    being written at the last checkpoint), the last digest is of that block's durable
    prefix, as for a file's short last block. So ``done`` is the true durable count wherever
    it is summed, and a block check reads ``min(block, done left)`` bytes per digest either
    way: no column was needed, and ledgers written before (whole blocks only) read the same.
    Chunks of a file never overlap, so ``(file_id, start)`` names one.
    """

    __tablename__ = "chunks"

    file_id: Mapped[int] = mapped_column(
        ForeignKey("files.id", ondelete="CASCADE"), primary_key=True
    )
    start: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    end: Mapped[int] = mapped_column(BigInteger)
    done: Mapped[int] = mapped_column(BigInteger, default=0)
    xxh3: Mapped[bytes] = mapped_column(LargeBinary, default=b"")
    # Who served the done bytes when a file has several sources: [[offset, url], …], each
    # url serving from its offset to the next one's (None: the file's one URL).
    sources: Mapped[list[Any] | None] = mapped_column(JSON)


class Event(Base):
    """One state change of a task: the history ``modelhaul show`` prints."""

    __tablename__ = "events"
    __table_args__ = (
        Index("ix_events_task_id", "task_id", "id"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    task_id: Mapped[int] = mapped_column(ForeignKey("tasks.id", ondelete="CASCADE"))
    from_state: Mapped[str | None] = mapped_column(String(16))
    to_state: Mapped[str] = mapped_column(String(16))
    at: Mapped[float] = mapped_column(Float)
    reason: Mapped[str] = mapped_column(Text)
    actor: Mapped[str | None] = mapped_column(String(255))


class CacheUse(Base):
    """When a cached model (a Hugging Face repo, an Ollama model, a downloaded file or
    folder) was last resolved or opened through modelhaul: the order of LRU eviction."""

    __tablename__ = "cache_uses"

    key: Mapped[str] = mapped_column(Text, primary_key=True)  # e.g. "hf:owner/name"
    last_used: Mapped[float] = mapped_column(Float)


class Limit(Base):
    """A bandwidth limit every process that runs downloads follows, changed at run time
    (``modelhaul limit``): the row ``scope="global"`` holds a fixed rate or a schedule.
    A task's own limit is its ``rate_limit`` option."""

    __tablename__ = "limits"

    scope: Mapped[str] = mapped_column(String(32), primary_key=True)
    rate: Mapped[int | None] = mapped_column(BigInteger)  # bytes per second; None: no limit
    # [[start_minute, end_minute, rate_or_null], …] local time; None: no schedule
    schedule: Mapped[list[Any] | None] = mapped_column(JSON)
    updated_at: Mapped[float] = mapped_column(Float)


class Content(Base):
    """A finished file on this machine whose SHA-256 is known: the content index that lets a
    download take bytes already here (a Hugging Face blob for an Ollama layer, and back)
    instead of fetching them. A path holds one content; a digest may be at many paths.
    ``size`` and ``mtime_ns`` are the file as indexed: a file that differs now is stale."""

    __tablename__ = "contents"
    __table_args__ = (Index("ix_contents_sha256", "sha256"),)

    path: Mapped[str] = mapped_column(Text, primary_key=True)
    sha256: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(BigInteger)
    mtime_ns: Mapped[int] = mapped_column(BigInteger)
    origin: Mapped[str] = mapped_column(Text)  # how it became known, e.g. "task 7"
    indexed_at: Mapped[float] = mapped_column(Float)


class Worker(Base):
    """A live process that runs downloads (a worker, a server, a foreground ``get``), one row
    per manager, kept by its heartbeat: what ``modelhaul workers`` lists and what the fleet's
    limits are shared by. A row whose heartbeat is older than ``stale_after`` is gone."""

    __tablename__ = "workers"

    owner: Mapped[str] = mapped_column(String(255), primary_key=True)  # its lease owner
    host: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[float] = mapped_column(Float)
    heartbeat_at: Mapped[float] = mapped_column(Float)
    tasks: Mapped[int] = mapped_column(Integer)  # how many it runs now
    rate: Mapped[int] = mapped_column(BigInteger)  # bytes per second it receives now
    version: Mapped[str] = mapped_column(String(64))  # modelhaul's
