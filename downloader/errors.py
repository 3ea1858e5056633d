"""Typed errors of the downloader. Each carries a message a user can act on. They all
stand under ``ModelhaulError``, and so do the ledger's (``LedgerError``): catch that one.

Frontends map them in one place each: ``downloader.cli.exitcodes`` (exit codes),
``downloader.server.errors`` (HTTP statuses) and ``downloader.progress`` (ERROR progress).
"""

from __future__ import annotations

from storage.errors import LedgerError, ModelhaulError


class SpecError(ModelhaulError, ValueError):
    """A download spec (URL, hf://…, ollama://…, alias) that cannot be understood."""


class DestinationError(ModelhaulError):
    """A destination that cannot be used (outside writable space, a folder, …)."""


class UnsafePathError(ModelhaulError, ValueError):
    """A name from outside (a hub's file list, a manifest, a request) that cannot be a path
    below its folder: ``..``, absolute, a backslash, NUL, too long, or out through a link."""

    def __init__(self, what: str, name: str, why: str) -> None:
        self.what = what
        self.name = name
        self.why = why
        shown = name if len(name) <= 120 else f"{name[:117]}..."
        super().__init__(f"{what} {shown!r} {why}: refusing to use it as a path")


class DestinationExistsError(DestinationError):
    """A file that is not this download's is already under its final name: it is kept."""

    def __init__(self, path: str, why: str) -> None:
        self.path = path
        super().__init__(
            f"{path} already exists and is not this download ({why}); it was left as it is. "
            "Pass --overwrite (overwrite=True) to replace it once the new bytes pass every check"
        )


class SourceError(ModelhaulError):
    """A source could not say what to download: no such model, revision or file, no access."""


class NotFoundError(SourceError):
    """The model, revision or file does not exist."""


class AuthRequiredError(SourceError):
    """The model needs a token (gated or private), or the token was refused."""


class TransferError(ModelhaulError):
    """Fetching a file failed for good."""

    def __init__(self, message: str, *, url: str | None = None) -> None:
        self.url = url
        super().__init__(message)


class HTTPStatusError(TransferError):
    """The server answered with a status that retrying cannot fix (404, 401, 403, …)."""

    def __init__(self, url: str, status: int, reason: str = "", detail: str = "") -> None:
        self.status = status
        self.reason = reason
        text = f"HTTP {status}{' ' + reason if reason else ''} for {url}"
        super().__init__(f"{text}: {detail}" if detail else text, url=url)


class TooLargeError(TransferError):
    """A remote announced (or sent) a file larger than ``Settings.max_file_size``: refused
    before anything is planned or allocated for it."""

    def __init__(
        self, url: str, size: int, ceiling: int, who: str = "the server announces"
    ) -> None:
        self.size = size
        self.ceiling = ceiling
        super().__init__(
            f"{who} {size} bytes for {url}, more than the largest file allowed ({ceiling} "
            "bytes; raise it with MODELHAUL_MAX_FILE_SIZE or Settings.max_file_size if this "
            "is real)",
            url=url,
        )


class RetriesExhaustedError(TransferError):
    """Transient failures went on past the retry budget."""

    def __init__(self, url: str, attempts: int, last_error: str) -> None:
        self.attempts = attempts
        self.last_error = last_error
        super().__init__(
            f"gave up on {url} after {attempts} attempts without progress; last error: "
            f"{last_error}",
            url=url,
        )


class RemoteChangedError(TransferError):
    """The remote file is no longer the one whose bytes we hold."""

    def __init__(self, url: str, why: str, *, can_restart: bool = True) -> None:
        self.why = why
        self.can_restart = can_restart
        super().__init__(f"the remote file changed ({why}): {url}", url=url)


class DigestMismatchError(TransferError):
    """The bytes on disk do not match the digest the source published."""

    def __init__(self, path: str, expected: str, actual: str) -> None:
        self.path = path
        self.expected = expected
        self.actual = actual
        super().__init__(
            f"SHA-256 of {path} is {actual}, but the source published {expected}; "
            "the download was discarded, retry to fetch it again"
        )


class DiskFullError(TransferError):
    """No space left on the device that holds the destination."""

    def __init__(self, path: str, needed: int | None = None, *, free: int | None = None) -> None:
        self.path = path
        self.needed = needed
        self.free = free
        if free is not None:
            super().__init__(
                f"not enough space for {path}: the file needs {needed} bytes and the disk has "
                f"{free} free; free some space and resume"
            )
            return
        more = f" (the file needs {needed} bytes)" if needed else ""
        super().__init__(
            f"no space left on device writing {path}{more}; free some space and resume"
        )


class DiskError(TransferError):
    """Any other OS error writing or reading the destination."""

    def __init__(self, path: str, error: OSError) -> None:
        self.path = path
        self.errno = error.errno
        super().__init__(f"cannot write {path}: {error.strerror or error}")


class FormatError(ModelhaulError):
    """A model file that does not parse as what it claims to be (truncated, garbled, or a
    missing shard). The message starts with "not a valid GGUF:" or the like."""


__all__ = [
    "AuthRequiredError",
    "DestinationError",
    "DestinationExistsError",
    "DigestMismatchError",
    "DiskError",
    "DiskFullError",
    "FormatError",
    "HTTPStatusError",
    "LedgerError",
    "ModelhaulError",
    "NotFoundError",
    "RemoteChangedError",
    "RetriesExhaustedError",
    "SourceError",
    "SpecError",
    "TooLargeError",
    "TransferError",
    "UnsafePathError",
]
