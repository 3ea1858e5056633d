"""A file fetched from several sources whose SHA-256 does not match: find the source that
served bad bytes by fetching its blocks again from the others, one source at a time. The
ledger's chunks say who served which bytes (this run and earlier ones), so the refetch is
limited to one source's blocks. Preferred sources (peers, which nothing vouches for) are
suspected first, then the one that served the least. When the digest matches once a
source's blocks hold the others' bytes, that source was the bad one: it is dropped with a
note. Otherwise the sources whose fresh bytes differ from its are tried next (a good
source's blocks refetched from the bad one change), then the rest, each once; two bad
sources at once are not told apart, and the file fails as any digest mismatch does."""

from __future__ import annotations

import asyncio
import logging

from downloader.durable import sha256_of
from downloader.engine.checkpoint import Checkpointer
from downloader.engine.context import FileRun
from downloader.engine.crew import Crew
from downloader.engine.fetch import RangeJob
from downloader.engine.hashing import bad_blocks
from downloader.engine.mirrors import Mirrors
from downloader.engine.partfile import PartFile
from downloader.engine.plan import Plan, repair, served_blocks, served_bytes
from storage import ChunkRecord

log = logging.getLogger(__name__)


async def cross_check(run: FileRun, part: PartFile, mirrors: Mirrors, sha: str) -> str:
    """The file's SHA-256 after fetching each suspect source's blocks again from the others
    (``sha`` when no source could be checked)."""
    expected = run.file.expected_sha256
    block = run.file.block_size
    by_url = {m.url: m for m in mirrors.all}
    chunks = await run.journal.chunks()
    amounts = served_bytes(chunks)
    # A source of an earlier run that is not among this run's is suspected first too.
    queue = sorted(
        amounts,
        key=lambda u: (not (by_url[u].preferred if u in by_url else True), amounts[u]),
    )
    tried: set[str] = set()
    while queue:
        url = queue.pop(0)
        mirror = by_url.get(url)
        others = [m for m in mirrors.live() if m is not mirror]
        if url in tried or not others:
            continue
        tried.add(url)
        before = await run.journal.chunks()
        blocks = served_blocks(before, block).get(url, set())
        if not blocks:
            continue
        was = mirror.dropped if mirror is not None else None
        if mirror is not None:
            mirror.dropped = "suspected of bad bytes"  # not asked meanwhile
        try:
            await _refetch(run, part, mirrors, before, blocks)
        finally:
            if mirror is not None:
                mirror.dropped = was
        changed = await bad_blocks(part, before, block) & blocks
        sha = await asyncio.to_thread(sha256_of, run.part_path)
        # Blocks that changed may have come from another bad source: only a digest that
        # matches once this source's blocks are replaced proves it was the one.
        if sha == expected:
            why = (
                f"{len(changed)} block(s) it served differ from the other sources', and the "
                f"file's SHA-256 matches with theirs ({len(blocks)} block(s) fetched again)"
            )
            if mirror is not None and mirror.dropped is None:
                await mirrors.drop(mirror, why)
            else:
                await run.journal.note(f"source {url} served bad bytes: {why}")
            return sha
        # Not this one alone: those whose fresh bytes differ from its are suspected next.
        fresh = served_blocks(await run.journal.chunks(), block)
        queue = [u for u, got in fresh.items() if got & blocks & changed] + queue
    return sha


async def _refetch(
    run: FileRun, part: PartFile, mirrors: Mirrors, before: list[ChunkRecord], blocks: set[int]
) -> None:
    """Fetch ``blocks`` again (from the mirrors still asked), journaled like any fetch."""
    config = run.config
    fixed = repair(before, blocks, run.file.block_size)
    assert run.file.size is not None
    plan = Plan.from_chunks(run.file.size, run.file.block_size, fixed, config.min_steal)
    await run.replace(fixed, dirty=True)
    checkpointer = Checkpointer(
        run.journal,
        run.file.id,
        part,
        plan,
        seconds=config.checkpoint_seconds,
        nbytes=config.checkpoint_bytes,
    )
    job: RangeJob = run.job(part, None, checkpointer)
    job.mirrors = mirrors
    run.progress.written = plan.written
    guard = checkpointer.start()
    try:
        count = max(1, min(config.connections, len(blocks)))
        await Crew(job, plan, config, count).run(guard)
    finally:
        await checkpointer.stop()
    await checkpointer.checkpoint()
