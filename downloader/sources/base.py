"""What every source provides: the files of a task, and what to do once they are all in."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import aiohttp

from downloader.progress import DownloadStatus
from downloader.settings import Settings
from downloader.specs import Spec
from storage import FileRecord, NewFile, TaskRecord


@dataclass(frozen=True)
class SourceContext:
    """What a source may use while resolving: settings, HTTP, and the caller's token (kept in
    memory only, never in the ledger)."""

    settings: Settings
    session: aiohttp.ClientSession
    token: str | None = None


@dataclass(frozen=True)
class Resolution:
    """The files of a task; headers (credentials) the engine sends only to each file's own
    host, never to a host it is redirected to; and ``pins``, options to keep in the task so
    that a later run resolves the same thing (a branch's commit, say)."""

    files: Sequence[NewFile]
    auth_headers: Mapping[str, str] = field(default_factory=dict)
    pins: Mapping[str, Any] = field(default_factory=dict)


class ExternalProgress(Protocol):
    """Where a source that hands the transfer to another program reports what it hears."""

    def layer(self, name: str, total: int, completed: int) -> None:
        """A part (an Ollama layer) of ``total`` bytes has ``completed`` of them."""

    def phase(self, status: DownloadStatus, message: str) -> None:
        """The transfer moved on (e.g. to verifying)."""


class Source(Protocol):
    """A kind of thing to download (``url``, ``huggingface``, ``mlx``, ``ollama``)."""

    provider: str
    folder_destination: bool  # destination() names a folder of files, not one file

    def destination(self, spec: Spec, dest: str | None, settings: Settings) -> Path:
        """Where the task's files go (checked for writability by the caller)."""
        ...

    async def run_elsewhere(
        self, task: TaskRecord, ctx: SourceContext, progress: ExternalProgress
    ) -> bool:
        """Do the whole transfer through another program (Ollama's daemon) and return True;
        False (the usual answer) lets our engine fetch the files ``resolve`` names."""
        ...

    async def resolve(self, task: TaskRecord, ctx: SourceContext) -> Resolution:
        """The task's files, from its spec (may ask the network)."""
        ...

    async def finish(
        self, task: TaskRecord, files: Sequence[FileRecord], ctx: SourceContext
    ) -> None:
        """Runs once every file is complete (links, manifests, …)."""
        ...
