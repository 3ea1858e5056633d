"""Any http(s) URL: one file."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

from downloader.paths import file_destination, filename_from_url
from downloader.settings import Settings
from downloader.sources.base import RemoteFile, Resolution, SourceContext, Update
from downloader.sources.credentials import netrc_auth
from downloader.specs import Spec


class UrlSource:
    """One URL to one file (with more URLs of the same bytes, its mirrors); its size and
    validators come from the engine's probe."""

    provider = "url"
    folder_destination = False

    def destination(self, spec: Spec, dest: str | None, settings: Settings) -> Path:
        return file_destination(dest, settings.download_dir, filename_from_url(spec.source))

    async def delegate(self, spec: Spec, ctx: SourceContext) -> AsyncIterator[Update] | None:
        return None

    async def resolve(self, spec: Spec, destination: Path, ctx: SourceContext) -> Resolution:
        """The one file; its digest when the user gave one (``sha256``, from ``--checksum``);
        credentials for its own host from the caller's token, else ``~/.netrc``."""
        sha256 = spec.options.get("sha256")
        # Mirrors (``--mirror``), checked when the task was made, kept in its options.
        mirrors = [m for m in spec.options.get("mirrors") or () if m != spec.source]
        urls = (spec.source, *mirrors)
        remote = RemoteFile(urls, destination.name, destination, sha256=sha256)
        if ctx.token:
            auth = {"Authorization": f"Bearer {ctx.token}"}
        else:
            auth = await asyncio.to_thread(netrc_auth, spec.source)
        return Resolution((remote,), auth)

    async def finish(
        self, spec: Spec, destination: Path, resolution: Resolution, ctx: SourceContext
    ) -> None:
        return None
