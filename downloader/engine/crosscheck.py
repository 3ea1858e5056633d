"""A file fetched from several mirrors whose SHA-256 does not match: find the mirror that
served bad bytes by fetching its blocks again from the others, one mirror at a time (the
one that served the least first). When the digest matches once a mirror's blocks hold the
others' bytes, that mirror was the bad one: it is dropped with a note. Otherwise the mirrors
whose fresh bytes differ from its are tried next (a good mirror's blocks refetched from the
bad one change), then the rest, each once; two bad mirrors at once are not told apart, and
the file fails as any digest mismatch does."""

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
from downloader.engine.plan import Plan, repair
from storage import ChunkRecord

log = logging.getLogger(__name__)


async def cross_check(run: FileRun, part: PartFile, mirrors: Mirrors, sha: str) -> str:
    """The file's SHA-256 after fetching each suspect mirror's blocks again from the others
    (``sha`` when no mirror could be checked)."""
    expected = run.file.expected_sha256
    block = run.file.block_size
    queue = sorted((m for m in mirrors.all if m.written), key=lambda m: m.received)
    tried: set[int] = set()
    while queue:
        mirror = queue.pop(0)
        others = [m for m in mirrors.live() if m is not mirror]
        if id(mirror) in tried or not others:
            continue
        tried.add(id(mirror))
        blocks = mirror.blocks(block)
        before = await run.journal.chunks()
        # What each mirror writes during the refetch is kept apart for a moment: the
        # writers of blocks that change are the next suspects.
        kept = {id(m): m.written for m in mirrors.all}
        for m in mirrors.all:
            m.written = []
        was, mirror.dropped = mirror.dropped, "suspected of bad bytes"  # not asked meanwhile
        try:
            await _refetch(run, part, mirrors, before, blocks)
        finally:
            mirror.dropped = was
            fresh = {id(m): m.blocks(block) for m in mirrors.all}
            for m in mirrors.all:
                m.written = kept[id(m)] + m.written
        changed = await bad_blocks(part, before, block) & blocks
        sha = await asyncio.to_thread(sha256_of, run.part_path)
        # Blocks that changed may have come from another bad mirror: only a digest that
        # matches once this mirror's blocks are replaced proves it was the one.
        if sha == expected:
            why = (
                f"{len(changed)} block(s) it served differ from the other mirrors', and the "
                "file's SHA-256 matches with theirs"
            )
            if mirror.dropped is None:
                await mirrors.drop(mirror, why)
            else:
                await run.journal.note(f"mirror {mirror.url} served bad bytes: {why}")
            return sha
        # Not this one alone: those whose fresh bytes differ from its are suspected next.
        queue = [m for m in mirrors.all if fresh[id(m)] & changed] + queue
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
