"""modelhaul: a downloader for large model files that never loses work.

The whole public surface::

    from downloader import download_model, DownloadStatus, DownloadProgress
    from downloader import DownloadManager, Settings

``download_model`` is seed 001's async generator of progress; ``DownloadManager`` queues,
runs, pauses, resumes and cancels downloads over the shared ledger.
"""

from downloader.cache import CacheError, ModelCache
from downloader.errors import (
    DestinationError,
    DigestMismatchError,
    DiskFullError,
    HTTPStatusError,
    ModelhaulError,
    RemoteChangedError,
    RetriesExhaustedError,
    SpecError,
    TransferError,
)
from downloader.manager import DownloadManager, Task
from downloader.oneshot import download_model
from downloader.preflight import estimate_download_size, validate
from downloader.progress import DownloadProgress, DownloadStatus
from downloader.settings import Settings
from downloader.specs import Spec, parse_spec
from storage import (
    IllegalTransitionError,
    LedgerError,
    TaskNotFoundError,
    TaskState,
    TransitionConflictError,
)

__all__ = [
    "CacheError",
    "DestinationError",
    "DigestMismatchError",
    "DiskFullError",
    "DownloadManager",
    "DownloadProgress",
    "DownloadStatus",
    "HTTPStatusError",
    "IllegalTransitionError",
    "LedgerError",
    "ModelCache",
    "ModelhaulError",
    "RemoteChangedError",
    "RetriesExhaustedError",
    "Settings",
    "Spec",
    "SpecError",
    "Task",
    "TaskNotFoundError",
    "TaskState",
    "TransferError",
    "TransitionConflictError",
    "download_model",
    "estimate_download_size",
    "parse_spec",
    "validate",
]
