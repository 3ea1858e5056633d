"""modelhaul: a downloader for large model files that never loses work.

The whole public surface is ``__all__`` below:

- ``download_model(provider, model, ...)``: AbstractCore's provider-agnostic call, an async
  generator of ``DownloadProgress`` (``DownloadStatus``);
- ``DownloadManager`` (and its ``Settings``): queue, run, pause, resume and cancel downloads
  over the shared ledger, from any process; its tasks are ``Task`` in a ``TaskState``;
- ``ModelCache``: what is cached where, eviction; ``estimate_download_size`` and
  ``validate``: checks before a download; ``parse_spec``/``Spec``: what a spec means;
- the errors, all under ``ModelhaulError``: catch that one, or a specific kind.
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
