"""Any http(s) URL: one file."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

from downloader.paths import file_destination, filename_from_url
from downloader.settings import Settings
from downloader.sources.base import RemoteFile, Resolution, SourceContext, Update
from downloader.specs import Spec


class UrlSource:
    """One URL to one file; its size and validators come from the engine's probe."""

    provider = "url"
    folder_destination = False

    def destination(self, spec: Spec, dest: str | None, settings: Settings) -> Path:
        return file_destination(dest, settings.download_dir, filename_from_url(spec.source))

    async def delegate(self, spec: Spec, ctx: SourceContext) -> AsyncIterator[Update] | None:
        return None

    async def resolve(self, spec: Spec, destination: Path, ctx: SourceContext) -> Resolution:
        return Resolution((RemoteFile((spec.source,), destination.name, destination),))

    async def finish(
        self, spec: Spec, destination: Path, resolution: Resolution, ctx: SourceContext
    ) -> None:
        return None
