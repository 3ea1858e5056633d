"""The modelhaul ledger: tasks, files, chunks and their history in one SQL database.

The ledger is the single source of truth; every process (API, CLI, server, workers) shares it.

Each name is imported from its module when it is first used (PEP 562): the states, the
errors and the ledger's location are plain Python, and a program that needs only them (the
command line's ``--help``) does not load SQLAlchemy.
"""

from __future__ import annotations

import importlib

# typing.TYPE_CHECKING without importing typing, which would be this package's one costly
# import (type checkers know the name).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from storage.contents import ContentRecord, ContentStore
    from storage.errors import (
        IllegalTransitionError,
        LeaseLostError,
        LedgerError,
        LedgerOpenError,
        LedgerUnavailableError,
        SchemaTooNewError,
        TaskNotFoundError,
        TransitionConflictError,
    )
    from storage.files import FileStore
    from storage.journal import LedgerJournal
    from storage.ledger import Ledger, open_ledger
    from storage.limits import LimitRecord, LimitSnapshot, LimitStore
    from storage.location import default_ledger_path, modelhaul_home
    from storage.notify import ChangeFeed, TaskChanges
    from storage.records import (
        ChunkRecord,
        EventRecord,
        FileCheckpoint,
        FileRecord,
        FileState,
        Lease,
        NewFile,
        NewTask,
        TaskRecord,
    )
    from storage.states import (
        AT_REST,
        FINAL_STATES,
        RESUMABLE,
        STANDING,
        TRANSITIONS,
        UNDERWAY,
        TaskState,
    )
    from storage.tasks import TaskStore
    from storage.workers import WorkerRecord, WorkerStore

# Where each public name lives (the imports above, for readers and type checkers).
_HOMES = {
    **dict.fromkeys(
        (
            "IllegalTransitionError",
            "LeaseLostError",
            "LedgerError",
            "LedgerOpenError",
            "LedgerUnavailableError",
            "SchemaTooNewError",
            "TaskNotFoundError",
            "TransitionConflictError",
        ),
        "storage.errors",
    ),
    **dict.fromkeys(("ContentRecord", "ContentStore"), "storage.contents"),
    "FileStore": "storage.files",
    "LedgerJournal": "storage.journal",
    "Ledger": "storage.ledger",
    "open_ledger": "storage.ledger",
    **dict.fromkeys(("LimitRecord", "LimitSnapshot", "LimitStore"), "storage.limits"),
    **dict.fromkeys(("ChangeFeed", "TaskChanges"), "storage.notify"),
    "default_ledger_path": "storage.location",
    "modelhaul_home": "storage.location",
    **dict.fromkeys(
        (
            "ChunkRecord",
            "EventRecord",
            "FileCheckpoint",
            "FileRecord",
            "FileState",
            "Lease",
            "NewFile",
            "NewTask",
            "TaskRecord",
        ),
        "storage.records",
    ),
    **dict.fromkeys(
        (
            "AT_REST",
            "FINAL_STATES",
            "RESUMABLE",
            "STANDING",
            "TRANSITIONS",
            "UNDERWAY",
            "TaskState",
        ),
        "storage.states",
    ),
    "TaskStore": "storage.tasks",
    **dict.fromkeys(("WorkerRecord", "WorkerStore"), "storage.workers"),
}

__all__ = [
    "AT_REST",
    "FINAL_STATES",
    "RESUMABLE",
    "STANDING",
    "TRANSITIONS",
    "UNDERWAY",
    "ChangeFeed",
    "ChunkRecord",
    "ContentRecord",
    "ContentStore",
    "EventRecord",
    "FileCheckpoint",
    "FileRecord",
    "FileState",
    "FileStore",
    "IllegalTransitionError",
    "Lease",
    "LeaseLostError",
    "Ledger",
    "LedgerError",
    "LedgerJournal",
    "LedgerOpenError",
    "LedgerUnavailableError",
    "LimitRecord",
    "LimitSnapshot",
    "LimitStore",
    "NewFile",
    "NewTask",
    "SchemaTooNewError",
    "TaskChanges",
    "TaskNotFoundError",
    "TaskRecord",
    "TaskState",
    "TaskStore",
    "TransitionConflictError",
    "WorkerRecord",
    "WorkerStore",
    "default_ledger_path",
    "modelhaul_home",
    "open_ledger",
]


def __getattr__(name: str) -> Any:
    """A public name, imported from its module on first use (then kept here)."""
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'storage' has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
