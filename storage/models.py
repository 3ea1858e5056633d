"""The ledger's tables, as SQLAlchemy Core tables.

Core, not the ORM's declarative classes: every query here is Core already, and importing
``sqlalchemy.orm`` and mapping the classes was a tenth of a second of every command's
start-up (``modelhaul get`` included) for nothing in use.

Times are UNIX seconds (float, UTC): they sort, subtract and compare with heartbeats without
time-zone conversions, and every backend stores them the same way.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

# Explicit constraint names so that Alembic can alter them on SQLite (batch mode) and the
# migrated schema compares equal to these models.
NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

METADATA = MetaData(naming_convention=NAMING)


# Task: One user request (a URL, a repo, an Ollama model) and its single state.
TASKS = Table(
    "tasks",
    METADATA,
    Column("id", Integer, primary_key=True),
    Column("provider", String(32), nullable=False),
    Column("source", Text, nullable=False),
    Column("revision", Text, nullable=True),
    Column("patterns", JSON, nullable=True),
    Column("destination", Text, nullable=False),
    Column("options", JSON, nullable=False),
    Column("spec_key", String(64), nullable=False),
    Column("label", Text, nullable=False),
    Column("state", String(16), nullable=False),
    Column("priority", Integer, default=0, nullable=False),
    Column("error", Text, nullable=True),
    Column("total_bytes", BigInteger, nullable=True),
    Column("downloaded_bytes", BigInteger, default=0, nullable=False),
    Column("files_total", Integer, default=0, nullable=False),
    Column("files_done", Integer, default=0, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    Column("started_at", Float, nullable=True),
    Column("finished_at", Float, nullable=True),
    Column("lease_owner", String(255), nullable=True),
    Column("lease_host", String(255), nullable=True),
    Column("lease_pid", Integer, nullable=True),
    Column("lease_started", Float, nullable=True),
    Column("heartbeat_at", Float, nullable=True),
    # The last lease holder, kept when the lease is cleared (a pause, a cancel): it alone may
    # still record its final checkpoint, until another process claims the task.
    Column("last_owner", String(255), nullable=True),
    # The host whose disk holds the task's files: set by each run as it starts writing them,
    # kept when it ends. With per-host destinations it says where a finished file is, and a
    # takeover elsewhere that finds no .part knows whose disk it was on.
    Column("files_host", String(255), nullable=True),
    # The scheduler's query: next pending by priority, then age (id is monotonic).
    Index("ix_tasks_queue", "state", "priority", "id"),
    Index("ix_tasks_spec_key", "spec_key"),
    # Observers (the server, `watch`) poll for tasks changed since their last look.
    Index("ix_tasks_updated_at", "updated_at"),
    sqlite_autoincrement=True,  # ids are never reused, so "task 7" stays task 7
)


# File: One remote object written to one local path; a task has one or more.
FILES = Table(
    "files",
    METADATA,
    Column("id", Integer, primary_key=True),
    Column("task_id", Integer, ForeignKey("tasks.id", ondelete="CASCADE"), nullable=False),
    Column("position", Integer, default=0, nullable=False),
    Column("url", Text, nullable=False),
    Column("relpath", Text, nullable=False),
    Column("local_path", Text, nullable=False),
    Column("size", BigInteger, nullable=True),
    Column("expected_sha256", String(64), nullable=True),
    Column("etag", Text, nullable=True),
    Column("last_modified", Text, nullable=True),
    Column("accept_ranges", Boolean, nullable=True),
    Column("state", String(16), nullable=False),
    Column("downloaded_bytes", BigInteger, default=0, nullable=False),
    Column("sha256", String(64), nullable=True),
    Column("block_size", Integer, nullable=False),
    # What the .part looked like at the last checkpoint; a mismatch on resume means it was
    # touched (or torn) after the ledger last spoke, so its blocks are re-hashed.
    Column("part_mtime_ns", BigInteger, nullable=True),
    Column("part_size", BigInteger, nullable=True),
    # Set while a process writes the .part, cleared by a clean stop: still set on resume
    # means the last run ended uncleanly.
    Column("dirty", Boolean, default=False, nullable=False),
    Column("error", Text, nullable=True),
    Column("meta", JSON, nullable=False),
    Column("updated_at", Float, nullable=False),
    UniqueConstraint("task_id", "relpath"),
    sqlite_autoincrement=True,
)


# Chunk: A byte range ``[start, end)`` of a file, fetched by one range request at a time.
# ``done`` counts the durable bytes from ``start``, and ``xxh3`` holds one 8-byte XXH3-64
# digest per block that ``done`` reaches into: where ``done`` ends mid-block (a block
# being written at the last checkpoint), the last digest is of that block's durable
# prefix, as for a file's short last block. So ``done`` is the true durable count wherever
# it is summed, and a block check reads ``min(block, done left)`` bytes per digest either
# way: no column was needed, and ledgers written before (whole blocks only) read the same.
# Chunks of a file never overlap, so ``(file_id, start)`` names one.
CHUNKS = Table(
    "chunks",
    METADATA,
    Column("file_id", Integer, ForeignKey("files.id", ondelete="CASCADE"), primary_key=True),
    Column("start", BigInteger, primary_key=True, autoincrement=False),
    Column("end", BigInteger, nullable=False),
    Column("done", BigInteger, default=0, nullable=False),
    Column("xxh3", LargeBinary, default=b"", nullable=False),
    # Who served the done bytes when a file has several sources: [[offset, url], …], each
    # url serving from its offset to the next one's (None: the file's one URL).
    Column("sources", JSON, nullable=True),
)


# Event: One state change of a task: the history ``modelhaul show`` prints.
EVENTS = Table(
    "events",
    METADATA,
    Column("id", Integer, primary_key=True),
    Column("task_id", Integer, ForeignKey("tasks.id", ondelete="CASCADE"), nullable=False),
    Column("from_state", String(16), nullable=True),
    Column("to_state", String(16), nullable=False),
    Column("at", Float, nullable=False),
    Column("reason", Text, nullable=False),
    Column("actor", String(255), nullable=True),
    Index("ix_events_task_id", "task_id", "id"),
    sqlite_autoincrement=True,
)


# CacheUse: When a cached model (a Hugging Face repo, an Ollama model, a downloaded file or
# folder) was last resolved or opened through modelhaul: the order of LRU eviction.
CACHE_USES = Table(
    "cache_uses",
    METADATA,
    Column("key", Text, primary_key=True),  # e.g. "hf:owner/name"
    Column("last_used", Float, nullable=False),
)


# Limit: A bandwidth limit every process that runs downloads follows, changed at run time
# (``modelhaul limit``): the row ``scope="global"`` holds a fixed rate or a schedule.
# A task's own limit is its ``rate_limit`` option.
LIMITS = Table(
    "limits",
    METADATA,
    Column("scope", String(32), primary_key=True),
    Column("rate", BigInteger, nullable=True),  # bytes per second; None: no limit
    # [[start_minute, end_minute, rate_or_null], …] local time; None: no schedule
    Column("schedule", JSON, nullable=True),
    Column("updated_at", Float, nullable=False),
)


# Content: A finished file on this machine whose SHA-256 is known: the content index that lets a
# download take bytes already here (a Hugging Face blob for an Ollama layer, and back)
# instead of fetching them. A path holds one content; a digest may be at many paths.
# ``size`` and ``mtime_ns`` are the file as indexed: a file that differs now is stale.
CONTENTS = Table(
    "contents",
    METADATA,
    Column("path", Text, primary_key=True),
    Column("sha256", String(64), nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("mtime_ns", BigInteger, nullable=False),
    Column("origin", Text, nullable=False),  # how it became known, e.g. "task 7"
    Column("indexed_at", Float, nullable=False),
    Index("ix_contents_sha256", "sha256"),
)


# Worker: A live process that runs downloads (a worker, a server, a foreground ``get``), one row
# per manager, kept by its heartbeat: what ``modelhaul workers`` lists and what the fleet's
# limits are shared by. A row whose heartbeat is older than ``stale_after`` is gone.
WORKERS = Table(
    "workers",
    METADATA,
    Column("owner", String(255), primary_key=True),  # its lease owner
    Column("host", String(255), nullable=False),
    Column("pid", Integer, nullable=False),
    Column("started_at", Float, nullable=False),
    Column("heartbeat_at", Float, nullable=False),
    Column("tasks", Integer, nullable=False),  # how many it runs now
    Column("rate", BigInteger, nullable=False),  # bytes per second it receives now
    Column("version", String(64), nullable=False),  # modelhaul's
)
