"""A file over many range requests: plan it (or take the plan the journal holds), open its
``.part``, re-check written blocks after an unclean stop, then run the connections with a
checkpointer beside them until every byte is written, and finish it."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from pathlib import Path
from urllib.parse import urlsplit

from downloader.engine.checkpoint import Checkpointer
from downloader.engine.context import FileRun
from downloader.engine.crew import Crew
from downloader.engine.crosscheck import cross_check
from downloader.engine.finish import finish
from downloader.engine.hashing import bad_blocks, seed_tails
from downloader.engine.mirrors import Mirror, Mirrors, Validators, check_mirror
from downloader.engine.partfile import PartFile, check_space
from downloader.engine.plan import Plan, repair, served_bytes
from downloader.engine.progress import Phase
from storage import FileRecord, FileState, LedgerUnavailableError

log = logging.getLogger(__name__)

SILENT_SECONDS = 60.0  # a mirror's host that did not answer is skipped this long


async def fetch_ranges(run: FileRun) -> FileRecord:
    """Download a file whose size is known and whose server takes ranges, from wherever its
    journal says it stands; returns the completed record.

    Cancellation (pause, cancel) stops the connections, makes a last checkpoint and
    re-raises; any other error does the same and propagates typed.
    """
    plan, part = await _open_part(run, await _load_plan(run))
    try:
        plan = await _check_blocks(run, plan, part)
        await _seed_tails(run, plan, part)
        return await _fetch(run, plan, part)
    finally:
        await part.close()


async def _load_plan(run: FileRun) -> Plan:
    """The plan the journal holds, or a new one (recorded at once)."""
    size, config = run.file.size, run.config
    assert size is not None
    run.check_size(size, "the source gives")
    chunks = await run.journal.chunks()
    if chunks:
        try:
            return Plan.from_chunks(size, run.file.block_size, chunks, config.min_steal)
        except ValueError as e:
            await run.journal.note(
                f"{run.file.relpath}: chunk records unusable ({e}); starting this file over"
            )
    plan = Plan.fresh(
        size,
        connections=config.connections,
        block=run.file.block_size,
        min_chunk=config.min_chunk,
        max_chunk=config.max_chunk,
        min_steal=config.min_steal,
    )
    await run.replace(plan.records(run.file.id), dirty=True, state=FileState.DOWNLOADING)
    return plan


async def _open_part(run: FileRun, plan: Plan) -> tuple[Plan, PartFile]:
    """Open the ``.part``; recorded progress whose ``.part`` is gone (or of another size) is
    void, and the file is planned anew."""
    stat = await asyncio.to_thread(_stat, run.part_path)
    if plan.written and (stat is None or stat.st_size != run.file.size):
        why = "missing" if stat is None else f"{stat.st_size} bytes, not {run.file.size}"
        if stat is None and run.written_on:  # a takeover across hosts, without shared storage
            why = f"missing (it was written on host {run.written_on}, not reachable from this one)"
        await run.journal.note(
            f"{run.part_path} is {why}: its recorded progress is void, fetching it again"
        )
        await run.replace([])
        plan = await _load_plan(run)
    assert run.file.size is not None
    await asyncio.to_thread(check_space, run.part_path, run.file.size)
    part = await PartFile.open(
        run.part_path,
        run.file.size,
        truncate=not plan.written,
        preallocate=run.config.preallocate,
    )
    return plan, part


async def _check_blocks(run: FileRun, plan: Plan, part: PartFile) -> Plan:
    """After an unclean stop, or if the .part changed behind the journal's back, re-hash
    every written block and fetch the bad ones again. A clean stop skips this."""
    if not plan.written:
        return plan
    stat = await part.sync()
    clean = (
        not run.file.dirty
        and stat.mtime_ns == run.file.part_mtime_ns
        and stat.size == run.file.part_size
    )
    if clean:
        return plan
    run.progress.enter(Phase.CHECKING)
    block = run.file.block_size
    records = plan.records(run.file.id)
    bad = await bad_blocks(part, records, block)
    run.progress.checked += plan.written
    if not bad:
        return plan
    fixed = repair(records, bad, block)
    await run.replace(fixed)
    await run.journal.note(
        f"{run.file.relpath}: {len(bad)} written block(s) did not match their XXH3 digests; "
        "fetching them again"
    )
    return Plan.from_chunks(plan.size, block, fixed, run.config.min_steal)


async def _seed_tails(run: FileRun, plan: Plan, part: PartFile) -> None:
    """Re-read the recorded partial blocks into their spans' running digests; one that no
    longer matches is fetched again from its last whole block (the next checkpoint records
    that)."""
    dropped = await seed_tails(part, plan)
    if dropped:
        await run.journal.note(
            f"{run.file.relpath}: {dropped} bytes of partly written blocks did not match "
            "their XXH3 digests; fetching them again"
        )


async def _fetch(run: FileRun, plan: Plan, part: PartFile) -> FileRecord:
    config = run.config
    size = plan.size
    run.progress.written = plan.written
    run.progress.enter(Phase.DOWNLOADING)
    if not (run.file.dirty and run.file.state is FileState.DOWNLOADING):
        await run.update(dirty=True, state=FileState.DOWNLOADING, error=None)
    hasher = run.hasher(part, plan.prefix)
    checkpointer = Checkpointer(
        run.journal,
        run.file.id,
        part,
        plan,
        seconds=config.checkpoint_seconds,
        nbytes=config.checkpoint_bytes,
    )
    job = run.job(part, hasher, checkpointer)
    job.mirrors = await _mirrors(run)
    guard = checkpointer.start()
    remaining = size - plan.written
    count = max(1, min(config.connections, -(-remaining // config.min_chunk)))
    try:
        crew = Crew(job, plan, config, count)
        await crew.run(guard)
        if crew.stats.handed_over:
            log.info(
                "%s: %d slow connection(s) handed over, %d re-request(s) won, at most %d at once",
                run.file.relpath,
                crew.stats.handed_over,
                crew.stats.races_won,
                crew.stats.most,
            )
        if not plan.finished:  # workers only stop early by raising; this is a bug guard
            raise RuntimeError(f"workers stopped with {run.file.relpath} unfinished")
        await checkpointer.stop()
        await checkpointer.checkpoint()
        run.progress.enter(Phase.VERIFYING)
        sha = await hasher.finish(size) if hasher is not None else None
        if job.mirrors is not None:
            expected = run.file.expected_sha256
            if sha is not None and expected and sha != expected:
                sha = await cross_check(run, part, job.mirrors, sha)
            await _say_sources(run)
    except BaseException:
        if hasher is not None:
            await _quietly(hasher.stop())
        await _quietly(checkpointer.stop())
        await _quietly(_last_checkpoint(run, checkpointer))
        raise
    return await finish(run, part, sha, size)


async def _mirrors(run: FileRun) -> Mirrors | None:
    """The file's mirrors that answer with its size and ranges (each other one noted in
    the history), the file's own URL first; None when the file has one URL. With mirrors
    given, even when none answers, the chunks record who served them: an earlier run's
    bad source is then still known."""
    if not run.mirrors:
        return None
    size = run.file.size
    assert size is not None
    # A peer (a preferred mirror) is asked briefly: it is a shortcut, and the origin is
    # there. A host that did not answer is not asked again for a while, file after file.
    now = time.monotonic()
    silent = run.ctx.unreachable
    asked = [r for r in run.mirrors if silent.get(_host(r.url), 0) <= now]
    for r in run.mirrors:
        if r not in asked:
            await run.journal.note(
                f"mirror {r.url} not used for this file: its host did not answer moments ago"
            )
    checked = await asyncio.gather(
        *(check_mirror(r, size, within=5 if r.url in run.preferred else 30) for r in asked)
    )
    first = Mirror(
        run.resource,
        Validators(run.file.etag, run.file.last_modified),
        preferred=run.resource.url in run.preferred,
    )
    good = [first]
    for c in checked:
        if c.validators is None:
            if c.unreachable:
                silent[_host(c.resource.url)] = time.monotonic() + SILENT_SECONDS
            await run.journal.note(f"mirror {c.resource.url} not used for this file: {c.why}")
        else:
            good.append(Mirror(c.resource, c.validators, preferred=c.resource.url in run.preferred))
    return Mirrors(good, run.journal.note)


def _host(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


async def _say_sources(run: FileRun) -> None:
    """Write into the history how many bytes each source served (all runs together)."""
    amounts = served_bytes(await run.journal.chunks())
    if not amounts:
        return
    parts = [f"{n:,} bytes from {url}" for url, n in sorted(amounts.items(), key=lambda i: -i[1])]
    await run.journal.note(f"{run.file.relpath}: {'; '.join(parts)}")


async def _last_checkpoint(run: FileRun, checkpointer: Checkpointer) -> None:
    await checkpointer.checkpoint()
    # Everything written is now recorded: the next run need not re-hash the blocks.
    await run.update(dirty=False)


async def _quietly(awaitable) -> None:  # type: ignore[no-untyped-def]
    try:
        await awaitable
    except LedgerUnavailableError as e:  # the error that brought us here, most likely
        log.info("cleanup step failed: %s", e)
    except Exception as e:  # cleanup must not hide the error that brought us here
        log.warning("cleanup step failed: %s", e)


def _stat(path: Path) -> os.stat_result | None:
    try:
        return path.stat()
    except FileNotFoundError:
        return None
