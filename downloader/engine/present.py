"""A file already under the final name: done at once when it is the right one, else kept (a
user's file is never replaced behind their back) or, where allowed, replaced once the new
bytes pass every check."""

from __future__ import annotations

import asyncio

from downloader.durable import sha256_of
from downloader.engine.context import FileRun
from downloader.engine.progress import Phase
from downloader.errors import DestinationExistsError
from storage import FileState


async def already_complete(run: FileRun) -> bool:
    """True when the final file is of the right size (and digest, when one is known), which
    is then recorded as done. False when there is nothing to keep, or what is there may be
    replaced. Any other file under the final name is a user's: ``DestinationExistsError``
    naming it (a store named by digest, where the right name with other bytes can only be
    damage, is the exception)."""
    dest = run.dest
    if not await asyncio.to_thread(dest.is_file):
        return False
    if await asyncio.to_thread(run.part_path.exists):
        return False  # an interrupted replacement of it: finish that first
    if run.file.size is None:
        await run.probe()
    actual = (await asyncio.to_thread(dest.stat)).st_size
    if run.file.size is not None and actual != run.file.size:
        return _may_replace(run, f"it has {actual} bytes, the download {run.file.size}")
    if run.file.state is FileState.COMPLETED:
        run.progress.done(actual)
        return True
    if run.file.meta.get("content_addressed") and run.file.expected_sha256:
        # A store named by digest (Ollama's blobs) only ever holds verified blobs under
        # their names: the right size there is the blob, no need to read it again.
        return await _record_present(run, actual, run.file.expected_sha256)
    sha = None
    if run.wants_sha256:
        run.progress.enter(Phase.VERIFYING)
        sha = await asyncio.to_thread(sha256_of, dest)
        if run.file.expected_sha256 and sha != run.file.expected_sha256:
            run.progress.enter(Phase.PENDING)
            return _may_replace(run, f"its SHA-256 is {sha}, not {run.file.expected_sha256}")
    return await _record_present(run, actual, sha)


def _may_replace(run: FileRun, why: str) -> bool:
    """False (download it) if the file now under the final name may be replaced once the
    new bytes pass every check; else ``DestinationExistsError``."""
    if run.replaceable:
        return False
    raise DestinationExistsError(str(run.dest), why)


async def _record_present(run: FileRun, size: int, sha: str | None) -> bool:
    await run.update(
        state=FileState.COMPLETED,
        size=size,
        sha256=sha,
        downloaded_bytes=size,
        dirty=False,
        error=None,
        meta={**run.file.meta, "present": True},
    )
    run.progress.done(size)
    return True
