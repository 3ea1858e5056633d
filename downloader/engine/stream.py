"""A server without ranges (or without a size): the whole file in one plain GET, restarted
from zero after any failure, and the task's history says so."""

from __future__ import annotations

import asyncio

from downloader.engine.context import FileRun
from downloader.engine.fetch import fetch_whole
from downloader.engine.finish import finish
from downloader.engine.partfile import PartFile, check_space
from downloader.engine.plan import Span
from downloader.engine.progress import Phase
from downloader.engine.retry import TransientError
from storage import ChunkRecord, FileRecord, FileState


async def stream_whole(run: FileRun) -> FileRecord:
    """Fetch the file in one stream into a fresh ``.part`` and finish it; returns the
    completed record."""
    size = run.file.size
    await run.journal.note(
        f"{run.file.relpath}: the server "
        + ("gives no size" if size is None else "does not support ranges")
        + ": downloading in one stream, restarted from zero after any failure"
    )
    await run.replace([], dirty=True, state=FileState.DOWNLOADING)
    policy = run.config.retry
    if size is not None:
        await asyncio.to_thread(check_space, run.part_path, size)
    part = await PartFile.open(
        run.part_path, size, truncate=True, preallocate=run.config.preallocate
    )
    try:
        while True:
            # Without a size, the stream may run at most one byte past the ceiling: that
            # byte proves it too large.
            span = Span(0, size if size is not None else run.config.max_file_size + 1)
            hasher = run.hasher(part, lambda span=span: span.done)
            run.progress.written = 0
            run.progress.enter(Phase.DOWNLOADING)
            try:
                await fetch_whole(run.job(part, hasher, None), span)
                if size is not None and span.done != size:
                    raise TransientError(f"body ended after {span.done} bytes")
                run.check_size(span.done, "the server sent more than")
                break
            except TransientError as e:
                if hasher is not None:
                    await hasher.stop()
                policy = await policy.next_attempt(
                    e, run.file.url, rng=run.ctx.rng, on_wait=run.progress.announce
                )
                await part.truncate(size or 0)
            except BaseException:
                if hasher is not None:
                    await hasher.stop()
                raise
        run.progress.enter(Phase.VERIFYING)
        sha = await hasher.finish(span.done) if hasher is not None else None
        await part.sync()
        chunk = ChunkRecord(run.file.id, 0, span.done, span.done, bytes(span.digests))
        await run.replace([chunk], size=span.done)
        return await finish(run, part, sha, span.done)
    finally:
        await part.close()
