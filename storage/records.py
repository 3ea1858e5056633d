"""Frozen records that cross the ledger's boundary; callers never see ORM rows."""

from __future__ import annotations

import enum
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from storage.states import NEW_STATES, TaskState

# Option keys that could carry a credential. The ledger refuses them outright, so a token can
# never reach the database file by accident (DESIGN: "secrets are never written").
SECRET_KEYS = frozenset({"token", "hf_token", "authorization", "password", "api_key", "headers"})


class FileState(enum.StrEnum):
    """States of one file inside a task (informational; the task owns the state machine)."""

    PENDING = "pending"
    DOWNLOADING = "downloading"
    COMPLETED = "completed"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class Lease:
    """Who runs a task: a process (host, pid and the process's start time) and, since one
    process may hold several managers, which of them (``instance``)."""

    host: str
    pid: int
    started: float
    instance: str = ""

    @property
    def owner(self) -> str:
        """The string stored in ``tasks.lease_owner`` and compared on every heartbeat."""
        owner = f"{self.host}:{self.pid}:{self.started:.2f}"
        return f"{owner}:{self.instance}" if self.instance else owner

    @classmethod
    def parse(cls, owner: str) -> Lease | None:
        """The lease an ``owner`` string names (None if it is not one)."""
        parts = owner.rsplit(":", 3) if owner.count(":") >= 3 else owner.rsplit(":", 2)
        if len(parts) < 3:
            return None
        try:
            return cls(
                parts[0], int(parts[1]), float(parts[2]), parts[3] if len(parts) == 4 else ""
            )
        except ValueError:
            return None

    def same_process(self, other: Lease) -> bool:
        """Both leases name the same running process (whatever the instance)."""
        return (self.host, self.pid, round(self.started, 2)) == (
            other.host,
            other.pid,
            round(other.started, 2),
        )


@dataclass(frozen=True, slots=True)
class NewTask:
    """A task to enqueue. Never holds a token: ``options`` with a secret key is rejected."""

    provider: str
    source: str
    destination: str
    revision: str | None = None
    patterns: tuple[str, ...] | None = None
    options: Mapping[str, Any] = field(default_factory=dict)
    priority: int = 0
    label: str | None = None
    state: TaskState = TaskState.PENDING

    def __post_init__(self) -> None:
        leaked = SECRET_KEYS.intersection(k.lower() for k in self.options)
        if leaked:
            raise ValueError(
                f"task options must not carry secrets ({', '.join(sorted(leaked))}); "
                "pass tokens to the downloader at run time instead"
            )
        if self.state not in NEW_STATES:
            raise ValueError(f"a new task starts pending or paused, not {self.state.value}")

    @property
    def spec_key(self) -> str:
        """A stable digest of what is fetched and where: equal keys mean the same download."""
        canonical = json.dumps(
            [
                self.provider,
                self.source,
                self.revision,
                list(self.patterns) if self.patterns is not None else None,
                self.destination,
            ],
            separators=(",", ":"),
        )
        return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class TaskRecord:
    """A task as the ledger holds it."""

    id: int
    provider: str
    source: str
    revision: str | None
    patterns: tuple[str, ...] | None
    destination: str
    options: Mapping[str, Any]
    spec_key: str
    label: str
    state: TaskState
    priority: int
    error: str | None
    total_bytes: int | None
    downloaded_bytes: int
    files_total: int
    files_done: int
    created_at: float
    updated_at: float
    started_at: float | None
    finished_at: float | None
    lease: Lease | None
    heartbeat_at: float | None
    last_owner: str | None = None  # who ran it last (kept after the lease is cleared)
    files_host: str | None = None  # the host whose disk holds its files (None: not known)

    @property
    def last_lease(self) -> Lease | None:
        """The lease of whoever ran it last (None if nobody did, or unreadable)."""
        return Lease.parse(self.last_owner) if self.last_owner else None


@dataclass(frozen=True, slots=True)
class EventRecord:
    """One recorded transition (``from_state`` is None for the task's creation)."""

    id: int
    task_id: int
    from_state: TaskState | None
    to_state: TaskState
    at: float
    reason: str
    actor: str | None


@dataclass(frozen=True, slots=True)
class NewFile:
    """A file a source resolved for a task."""

    url: str
    relpath: str
    local_path: str
    block_size: int
    size: int | None = None
    expected_sha256: str | None = None
    etag: str | None = None
    last_modified: str | None = None
    meta: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class FileRecord:
    """A file as the ledger holds it."""

    id: int
    task_id: int
    position: int
    url: str
    relpath: str
    local_path: str
    size: int | None
    expected_sha256: str | None
    etag: str | None
    last_modified: str | None
    accept_ranges: bool | None
    state: FileState
    downloaded_bytes: int
    sha256: str | None
    block_size: int
    part_mtime_ns: int | None
    part_size: int | None
    dirty: bool
    error: str | None
    meta: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class ChunkRecord:
    """A chunk's durable state: ``done`` bytes from ``start``, one XXH3-64 per block they
    reach into, and who served them: ``(offset, url)`` pairs, each url from its offset to
    the next pair's (empty: the file's one URL).

    ``done`` may end mid-block (a block being written at a checkpoint): the last digest is
    then that of the block's first ``done % block`` bytes. Keeping ``done`` the true count,
    rather than block-aligned beside a separate tail length, keeps every sum of it (totals,
    progress, ``verify``) right without change, and a check of the digests reads each
    block up to ``done`` just as it reads a file's short last block."""

    file_id: int
    start: int
    end: int
    done: int = 0
    xxh3: bytes = b""
    sources: tuple[tuple[int, str], ...] = ()

    @property
    def finished(self) -> bool:
        """True when every byte of the range is durable."""
        return self.start + self.done >= self.end


@dataclass(frozen=True, slots=True)
class FileCheckpoint:
    """What one checkpoint records for one file: the chunks that moved (new ones included)
    and how the ``.part`` looked right after its data was synced."""

    file_id: int
    chunks: tuple[ChunkRecord, ...]
    downloaded_bytes: int
    part_mtime_ns: int | None = None
    part_size: int | None = None


# Rows to records: ``row`` is any object with a table's columns as attributes and its JSON
# columns decoded (a SQLAlchemy row, or storage.glance's reading of the file).


def task_record(row: Any) -> TaskRecord:
    """Build a ``TaskRecord`` from a row of the tasks table."""
    lease = Lease.parse(row.lease_owner) if row.lease_owner is not None else None
    return TaskRecord(
        id=row.id,
        provider=row.provider,
        source=row.source,
        revision=row.revision,
        patterns=tuple(row.patterns) if row.patterns is not None else None,
        destination=row.destination,
        options=row.options or {},
        spec_key=row.spec_key,
        label=row.label,
        state=TaskState(row.state),
        priority=row.priority,
        error=row.error,
        total_bytes=row.total_bytes,
        downloaded_bytes=row.downloaded_bytes,
        files_total=row.files_total,
        files_done=row.files_done,
        created_at=row.created_at,
        updated_at=row.updated_at,
        started_at=row.started_at,
        finished_at=row.finished_at,
        lease=lease,
        heartbeat_at=row.heartbeat_at,
        last_owner=row.last_owner,
        files_host=row.files_host,
    )


def file_record(row: Any) -> FileRecord:
    """Build a ``FileRecord`` from a row of the files table."""
    return FileRecord(
        id=row.id,
        task_id=row.task_id,
        position=row.position,
        url=row.url,
        relpath=row.relpath,
        local_path=row.local_path,
        size=row.size,
        expected_sha256=row.expected_sha256,
        etag=row.etag,
        last_modified=row.last_modified,
        accept_ranges=row.accept_ranges,
        state=FileState(row.state),
        downloaded_bytes=row.downloaded_bytes,
        sha256=row.sha256,
        block_size=row.block_size,
        part_mtime_ns=row.part_mtime_ns,
        part_size=row.part_size,
        dirty=bool(row.dirty),
        error=row.error,
        meta=row.meta or {},
    )
