"""The modelhaul ledger: tasks, files, chunks and their history in one SQL database.

The ledger is the single source of truth; every process (API, CLI, server, workers) shares it.
"""

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
from storage.location import default_ledger_path, modelhaul_home
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

__all__ = [
    "AT_REST",
    "FINAL_STATES",
    "RESUMABLE",
    "STANDING",
    "TRANSITIONS",
    "UNDERWAY",
    "ChunkRecord",
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
    "NewFile",
    "NewTask",
    "SchemaTooNewError",
    "TaskNotFoundError",
    "TaskRecord",
    "TaskState",
    "TaskStore",
    "TransitionConflictError",
    "default_ledger_path",
    "modelhaul_home",
    "open_ledger",
]
