"""Any http(s) URL: one file."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from downloader.paths import file_destination, filename_from_url
from downloader.settings import Settings
from downloader.sources.base import ExternalProgress, Resolution, SourceContext
from downloader.specs import Spec
from storage import FileRecord, NewFile, TaskRecord


class UrlSource:
    """One URL to one file; its size and validators come from the engine's probe."""

    provider = "url"
    folder_destination = False

    def destination(self, spec: Spec, dest: str | None, settings: Settings) -> Path:
        return file_destination(dest, settings.download_dir, filename_from_url(spec.source))

    async def run_elsewhere(
        self, task: TaskRecord, ctx: SourceContext, progress: ExternalProgress
    ) -> bool:
        return False

    async def resolve(self, task: TaskRecord, ctx: SourceContext) -> Resolution:
        path = Path(task.destination)
        return Resolution([NewFile(task.source, path.name, str(path), ctx.settings.block_size)])

    async def finish(
        self, task: TaskRecord, files: Sequence[FileRecord], ctx: SourceContext
    ) -> None:
        return None
