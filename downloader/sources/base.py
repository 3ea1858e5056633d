"""What every source provides: from a spec, the remote files and where their bytes go; and
what to do once they are all in. Sources know nothing of the ledger: they take a ``Spec``
and return ``RemoteFile``s, which the manager records as it sees fit."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import aiohttp

from downloader.progress import DownloadStatus
from downloader.settings import Settings
from downloader.specs import Spec


@dataclass(frozen=True)
class SourceContext:
    """What a source may use while resolving: settings, HTTP, and the caller's token (kept in
    memory only, never in the ledger)."""

    settings: Settings
    session: aiohttp.ClientSession
    token: str | None = None


@dataclass(frozen=True)
class RemoteFile:
    """One remote object and where its bytes go.

    ``urls``: where it can be fetched, the first choice first (one today; mirrors are more).
    ``name``: its name at the source (a repo path, a blob name, the URL's file name), as
    users see it. ``target``: the local path its verified bytes end at. ``sha256``: the
    digest the source publishes, checked before the bytes take their name.
    ``content_addressed``: ``target`` is named by that digest, so a file of the right size
    there is this one, and a damaged one may be replaced. ``partial_suffix``: what the
    bytes are called until every check has passed, ``target`` plus this suffix (a store's
    own convention: the Hugging Face cache's ``.incomplete``; None: ``.part``). ``meta``:
    what the source needs back in ``finish`` (a commit, the names sharing a blob, a media
    type)."""

    urls: tuple[str, ...]
    name: str
    target: Path
    size: int | None = None
    sha256: str | None = None
    content_addressed: bool = False
    partial_suffix: str | None = None
    meta: Mapping[str, Any] = field(default_factory=dict)

    @property
    def url(self) -> str:
        """The first choice of ``urls``."""
        return self.urls[0]


@dataclass(frozen=True)
class Resolution:
    """The files of a spec; headers (credentials) the engine sends only to each file's own
    host, never to a host it is redirected to; ``pins``, options to keep with the task so
    that a later run resolves the same thing (a branch's commit, a manifest); and
    ``folders``, made before the first byte is fetched (not by a resolve alone: a dry run
    or a size check leaves nothing behind)."""

    files: tuple[RemoteFile, ...]
    auth_headers: Mapping[str, str] = field(default_factory=dict)
    pins: Mapping[str, Any] = field(default_factory=dict)
    folders: tuple[Path, ...] = ()


@dataclass(frozen=True)
class LayerUpdate:
    """Another program (Ollama's daemon) reports one part of its transfer."""

    name: str
    total: int
    completed: int


@dataclass(frozen=True)
class PhaseUpdate:
    """Another program moved on (to verifying, say)."""

    status: DownloadStatus
    message: str


Update = LayerUpdate | PhaseUpdate


class Source(Protocol):
    """A kind of thing to download (``url``, ``huggingface``, ``mlx``, ``ollama``)."""

    provider: str
    folder_destination: bool  # destination() names a folder of files, not one file

    def destination(self, spec: Spec, dest: str | None, settings: Settings) -> Path:
        """Where the spec's files go (checked for writability by the caller)."""
        ...

    async def delegate(self, spec: Spec, ctx: SourceContext) -> AsyncIterator[Update] | None:
        """The whole transfer as done by another program (Ollama's daemon): its progress,
        ending when it is done; None (the usual answer) lets our engine fetch the files
        ``resolve`` names."""
        ...

    async def resolve(self, spec: Spec, destination: Path, ctx: SourceContext) -> Resolution:
        """The spec's files (may ask the network)."""
        ...

    async def finish(
        self, spec: Spec, destination: Path, resolution: Resolution, ctx: SourceContext
    ) -> None:
        """Runs once every file is in place and verified (links, manifests, …)."""
        ...
