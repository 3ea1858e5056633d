"""Exit codes, and which error maps to which, in one place.

0 done · 1 failed (a download, a check, a refused change) · 2 usage (a bad command line,
spec, destination or task id) · 130 interrupted (the downloads were paused, resumable).
"""

from __future__ import annotations

from downloader.errors import DestinationError, SpecError
from storage import TaskNotFoundError

OK = 0
FAILED = 1
USAGE = 2
INTERRUPTED = 130


def code_for(error: BaseException) -> int:
    """The exit code an error ends the command with."""
    if isinstance(error, SpecError | DestinationError | TaskNotFoundError | ValueError):
        return USAGE
    if isinstance(error, KeyboardInterrupt):
        return INTERRUPTED
    return FAILED
