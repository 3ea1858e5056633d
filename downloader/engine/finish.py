"""After the last byte: every check runs on the ``.part``, and only bytes that pass them all
take the final name (fsync, atomic rename, fsync of the folder), then the journal says so."""

from __future__ import annotations

import asyncio
import os

from downloader.engine.context import FileRun
from downloader.engine.partfile import PartFile
from downloader.errors import DestinationExistsError, DigestMismatchError, ModelhaulError
from storage import FileRecord, FileState


async def finish(run: FileRun, part: PartFile, sha: str | None, size: int) -> FileRecord:
    """Check the finished ``.part`` (its SHA-256 against the published one, then the
    caller's check of its format) and move it to the final name; returns the completed
    record. Bytes that fail a check are discarded; a file that came to be under the final
    name meanwhile is kept unless replacing it was allowed."""
    expected = run.file.expected_sha256
    if expected and sha is not None and sha != expected:
        await _discard(run, part)
        raise DigestMismatchError(str(run.dest), expected, sha)
    if run.check is not None:
        try:
            await run.check(run.part_path, run.file)
        except ModelhaulError:
            await _discard(run, part)
            raise
    # Whatever came to be under the final name while we downloaded is someone's: keep it,
    # and keep our bytes too (allowing the overwrite then finishes at once).
    if not run.replaceable and await asyncio.to_thread(os.path.lexists, run.dest):
        raise DestinationExistsError(str(run.dest), "found there when the download finished")
    await part.finalize(run.dest)
    await run.update(
        state=FileState.COMPLETED,
        sha256=sha,
        size=size,
        downloaded_bytes=size,
        dirty=False,
        error=None,
    )
    run.progress.done(size)
    return run.file


async def _discard(run: FileRun, part: PartFile) -> None:
    """Bytes that failed a check: forget their progress and delete them."""
    await run.replace([], dirty=False)
    await part.close()
    await asyncio.to_thread(run.part_path.unlink, missing_ok=True)
