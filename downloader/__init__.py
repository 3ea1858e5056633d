"""modelhaul: a downloader for large model files that never loses work.

The whole public surface is ``__all__`` below:

- ``download_model(provider, model, ...)``: AbstractCore's provider-agnostic call, an async
  generator of ``DownloadProgress`` (``DownloadStatus``);
- ``DownloadManager`` (and its ``Settings``): queue, run, pause, resume and cancel downloads
  over the shared ledger, from any process; its tasks are ``Task`` in a ``TaskState``;
- ``ModelCache``: what is cached where, eviction; ``estimate_download_size`` and
  ``validate``: checks before a download; ``parse_spec``/``Spec``: what a spec means;
- the errors, all under ``ModelhaulError``: catch that one, or a specific kind.

Each name is imported from its module when it is first used (PEP 562), so that
``import downloader.cli`` (``modelhaul --help``) does not load SQLAlchemy, aiohttp and the
whole stack; ``from downloader import DownloadManager`` works as ever.
"""

from __future__ import annotations

# typing.TYPE_CHECKING without importing typing, which would be this package's one costly
# import (type checkers know the name).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

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

# Where each public name lives (the imports above, for readers and type checkers).
_HOMES = {
    "CacheError": "downloader.cache",
    "ModelCache": "downloader.cache",
    "DestinationError": "downloader.errors",
    "DigestMismatchError": "downloader.errors",
    "DiskFullError": "downloader.errors",
    "HTTPStatusError": "downloader.errors",
    "ModelhaulError": "downloader.errors",
    "RemoteChangedError": "downloader.errors",
    "RetriesExhaustedError": "downloader.errors",
    "SpecError": "downloader.errors",
    "TransferError": "downloader.errors",
    "DownloadManager": "downloader.manager",
    "Task": "downloader.manager",
    "download_model": "downloader.oneshot",
    "estimate_download_size": "downloader.preflight",
    "validate": "downloader.preflight",
    "DownloadProgress": "downloader.progress",
    "DownloadStatus": "downloader.progress",
    "Settings": "downloader.settings",
    "Spec": "downloader.specs",
    "parse_spec": "downloader.specs",
    "IllegalTransitionError": "storage",
    "LedgerError": "storage",
    "TaskNotFoundError": "storage",
    "TaskState": "storage",
    "TransitionConflictError": "storage",
}

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


def __getattr__(name: str) -> Any:
    """A public name, imported from its module on first use (then kept here)."""
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'downloader' has no attribute {name!r}")
    # importlib is imported here, when a name is first used: at the package's import it
    # would widen the moment in which a Ctrl-C meets modelhaul's code before the CLI's own
    # handling of it is in place.
    import importlib

    value = getattr(importlib.import_module(home), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
