"""Download one file: probe, plan or resume, check, fetch with many connections, verify,
rename into place. The file's journal is told at every step that matters."""

from __future__ import annotations

import asyncio
import enum
import logging
import os
import random
import shutil
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from downloader.durable import sha256_of
from downloader.engine.checkpoint import Checkpointer
from downloader.engine.config import EngineConfig
from downloader.engine.fetch import Expected, RangeJob, fetch_whole, work
from downloader.engine.hashing import TrailingSha256, bad_blocks
from downloader.engine.http import Resource
from downloader.engine.journal import FileJournal
from downloader.engine.partfile import PartFile, part_path
from downloader.engine.plan import Plan, Span, repair
from downloader.engine.probe import if_range_value, probe
from downloader.engine.ratelimit import TokenBucket
from downloader.engine.retry import TransientError
from downloader.errors import (
    DestinationExistsError,
    DigestMismatchError,
    DiskFullError,
    ModelhaulError,
    RemoteChangedError,
    TooLargeError,
)
from storage import ChunkRecord, FileRecord, FileState, LedgerUnavailableError

log = logging.getLogger(__name__)


class Phase(enum.StrEnum):
    """What one file is doing now, for progress reports ("verifying" is not a ledger state)."""

    PENDING = "pending"
    PROBING = "probing"
    CHECKING = "checking"  # re-hashing written blocks after an unclean stop
    DOWNLOADING = "downloading"
    VERIFYING = "verifying"  # the SHA-256 tail after the last byte
    DONE = "done"


@dataclass
class FileProgress:
    """Live counters of one file, read by whoever reports progress; ``on_phase`` (if set)
    hears each phase change at once, so no phase is missed between two samples."""

    file_id: int
    relpath: str
    size: int | None
    written: int = 0  # bytes in place (the .part, or the final file)
    fetched: int = 0  # bytes this process received from the network for it
    checked: int = 0  # written bytes re-hashed because the last stop was not clean
    phase: Phase = Phase.PENDING
    note: str | None = None  # what a user should know now ("server asked to wait 120 s")
    on_phase: Callable[[], None] | None = field(default=None, repr=False, compare=False)

    def enter(self, phase: Phase) -> None:
        """Move to ``phase`` and tell the listener."""
        if phase is not self.phase:
            self.phase = phase
            if self.on_phase is not None:
                self.on_phase()


# Runs on the finished ``.part`` (its path, and the file's record) before it may take the
# final name: raises (a ``FormatError``, say) when the bytes are not what they claim to be.
FileCheck = Callable[[Path, FileRecord], Awaitable[None]]


@dataclass(frozen=True)
class EngineContext:
    """What every file download of a process shares: one HTTP session (``open_session``),
    the tunables, the global rate limit, and the randomness of backoff jitter."""

    session: aiohttp.ClientSession
    config: EngineConfig
    limiter: TokenBucket
    rng: random.Random = field(default_factory=random.Random)


class FileDownload:
    """One file of one task, from wherever its journal says it stands to done. Everything
    it learns and every byte it makes durable goes to ``journal``, the file's own record;
    ``progress`` is for whoever reports it."""

    def __init__(
        self,
        ctx: EngineContext,
        file: FileRecord,
        journal: FileJournal,
        *,
        auth_headers: dict[str, str] | None = None,
        progress: FileProgress | None = None,
        overwrite: bool = False,
        check: FileCheck | None = None,
    ) -> None:
        self.ctx = ctx
        self.file = file
        self.dest = Path(file.local_path)
        self.part_path = part_path(self.dest)
        self.resource = Resource(
            ctx.session, file.url, auth_headers=auth_headers, retry=ctx.config.retry
        )
        self.progress = progress or FileProgress(file.id, file.relpath, file.size)
        self.journal = journal
        self._overwrite = overwrite
        self._check = check
        self._config = ctx.config

    async def _update(self, **fields: Any) -> FileRecord:
        """Write file columns through the journal."""
        return await self.journal.update(**fields)

    async def _replace(self, chunks: list[ChunkRecord], **fields: Any) -> FileRecord:
        """Write a new chunk plan (and file columns) through the journal."""
        return await self.journal.replace_chunks(chunks, **fields)

    async def run(self) -> FileRecord:
        """Download (or confirm) the file; returns its completed record.

        Cancellation (pause, cancel) stops the connections, makes a last checkpoint and
        re-raises; any other error does the same and propagates typed.
        """
        if await self._already_complete():
            return self.file
        restarts = 0
        while True:
            try:
                return await self._attempt()
            except RemoteChangedError as e:
                restarts += 1
                if not e.can_restart or restarts > self._config.max_restarts:
                    raise
                await self._start_over(f"{e}; starting this file over")

    # --- before fetching ----------------------------------------------------------------------

    async def _already_complete(self) -> bool:
        """A final file of the right size (and digest, when one is known) is done at once.
        Any other file under the final name is a user's, kept unless ``overwrite``: the
        download then fails at once naming it (a store named by digest, where the right
        name with other bytes can only be damage, is the exception)."""
        if not await asyncio.to_thread(self.dest.is_file):
            return False
        if await asyncio.to_thread(self.part_path.exists):
            return False  # an interrupted replacement of it: finish that first
        if self.file.size is None:
            await self._probe()
        actual = (await asyncio.to_thread(self.dest.stat)).st_size
        if self.file.size is not None and actual != self.file.size:
            return self._may_replace(f"it has {actual} bytes, the download {self.file.size}")
        if self.file.state is FileState.COMPLETED:
            self._done(actual)
            return True
        if self.file.meta.get("content_addressed") and self.file.expected_sha256:
            # A store named by digest (Ollama's blobs) only ever holds verified blobs under
            # their names: the right size there is the blob, no need to read it again.
            return await self._record_present(actual, self.file.expected_sha256)
        sha = None
        if self.file.expected_sha256 or self._config.always_sha256:
            self.progress.enter(Phase.VERIFYING)
            sha = await asyncio.to_thread(sha256_of, self.dest)
            if self.file.expected_sha256 and sha != self.file.expected_sha256:
                self.progress.enter(Phase.PENDING)
                return self._may_replace(f"its SHA-256 is {sha}, not {self.file.expected_sha256}")
        return await self._record_present(actual, sha)

    def _may_replace(self, why: str) -> bool:
        """False (download it) if the file now under the final name may be replaced once
        the new bytes pass every check; else ``DestinationExistsError``."""
        if self._overwrite or self.file.meta.get("content_addressed"):
            return False
        raise DestinationExistsError(str(self.dest), why)

    async def _record_present(self, size: int, sha: str | None) -> bool:
        self.file = await self._update(
            state=FileState.COMPLETED,
            size=size,
            sha256=sha,
            downloaded_bytes=size,
            dirty=False,
            error=None,
            meta={**self.file.meta, "present": True},
        )
        self._done(size)
        return True

    async def _probe(self) -> None:
        self.progress.enter(Phase.PROBING)
        policy = self._config.retry
        while True:
            try:
                found = await probe(self.resource)
                break
            except TransientError as e:
                policy = await policy.next_attempt(
                    e, self.file.url, rng=self.ctx.rng, on_wait=self._note
                )
        self._check_size(found.size, "the server announces")
        self.file = await self._update(
            size=found.size,
            etag=found.etag,
            last_modified=found.last_modified,
            accept_ranges=found.ranges,
        )
        self.progress.size = found.size

    def _check_size(self, size: int | None, who: str) -> None:
        """Refuse a size past the ceiling before anything is planned or allocated for it."""
        if size is not None and size > self._config.max_file_size:
            raise TooLargeError(self.file.url, size, self._config.max_file_size, who)

    def _note(self, note: str | None) -> None:
        self.progress.note = note
        if self.progress.on_phase is not None:
            self.progress.on_phase()

    async def _start_over(self, why: str) -> None:
        log.warning("task %s: %s", self.file.task_id, why)
        await self.journal.note(why)
        self.file = await self._replace(
            [],
            etag=None,
            last_modified=None,
            accept_ranges=None,
            size=self.file.size if self.file.expected_sha256 else None,
            part_mtime_ns=None,
            part_size=None,
        )
        self.progress.written = 0

    # --- fetching -----------------------------------------------------------------------------

    async def _attempt(self) -> FileRecord:
        # Without ranges every run starts from zero anyway: ask again whether there are some
        # now (the "no" may have been one proxy's, one time).
        if not self.file.accept_ranges:
            known_size = self.file.size
            await self._probe()
            if (
                self.file.expected_sha256
                and known_size is not None
                and self.file.size != known_size
            ):
                raise _doomed(self.file, known_size)
        if not self.file.accept_ranges or self.file.size is None:
            return await self._stream_whole()
        plan, part = await self._open_part(await self._load_plan())
        try:
            plan = await self._check_blocks(plan, part)
            return await self._fetch_ranges(plan, part)
        finally:
            await part.close()

    async def _load_plan(self) -> Plan:
        size, s = self.file.size, self._config
        assert size is not None
        self._check_size(size, "the source gives")
        chunks = await self.journal.chunks()
        if chunks:
            try:
                return Plan.from_chunks(size, self.file.block_size, chunks, s.min_steal)
            except ValueError as e:
                await self.journal.note(
                    f"{self.file.relpath}: chunk records unusable ({e}); starting this file over",
                )
        plan = Plan.fresh(
            size,
            connections=s.connections,
            block=self.file.block_size,
            min_chunk=s.min_chunk,
            max_chunk=s.max_chunk,
            min_steal=s.min_steal,
        )
        self.file = await self._replace(
            plan.records(self.file.id), dirty=True, state=FileState.DOWNLOADING
        )
        return plan

    async def _open_part(self, plan: Plan) -> tuple[Plan, PartFile]:
        stat = await asyncio.to_thread(_stat, self.part_path)
        if plan.written and (stat is None or stat.st_size != self.file.size):
            why = "missing" if stat is None else f"{stat.st_size} bytes, not {self.file.size}"
            await self.journal.note(
                f"{self.part_path} is {why}: its recorded progress is void, fetching it again",
            )
            await self._replace([])
            plan = await self._load_plan()
        assert self.file.size is not None
        await asyncio.to_thread(_check_space, self.part_path, self.file.size)
        part = await PartFile.open(
            self.part_path,
            self.file.size,
            truncate=not plan.written,
            preallocate=self._config.preallocate,
        )
        return plan, part

    async def _check_blocks(self, plan: Plan, part: PartFile) -> Plan:
        """After an unclean stop, or if the .part changed behind the journal's back, re-hash
        every written block and fetch the bad ones again. A clean stop skips this."""
        if not plan.written:
            return plan
        stat = await part.sync()
        clean = (
            not self.file.dirty
            and stat.mtime_ns == self.file.part_mtime_ns
            and stat.size == self.file.part_size
        )
        if clean:
            return plan
        self.progress.enter(Phase.CHECKING)
        records = plan.records(self.file.id)
        bad = await bad_blocks(part, records, self.file.block_size)
        self.progress.checked += plan.written
        if not bad:
            return plan
        fixed = repair(records, bad, self.file.block_size)
        await self._replace(fixed)
        await self.journal.note(
            f"{self.file.relpath}: {len(bad)} written block(s) did not match their XXH3 digests; "
            "fetching them again",
        )
        return Plan.from_chunks(plan.size, self.file.block_size, fixed, self._config.min_steal)

    async def _fetch_ranges(self, plan: Plan, part: PartFile) -> FileRecord:
        s = self._config
        size = plan.size
        self.progress.written = plan.written
        self.progress.enter(Phase.DOWNLOADING)
        if not (self.file.dirty and self.file.state is FileState.DOWNLOADING):
            self.file = await self._update(dirty=True, state=FileState.DOWNLOADING, error=None)
        hasher = self._hasher(part, plan.prefix)
        checkpointer = Checkpointer(
            self.journal,
            self.file.id,
            part,
            plan,
            seconds=s.checkpoint_seconds,
            nbytes=s.checkpoint_bytes,
        )
        job = self._job(part, hasher, checkpointer)
        guard = checkpointer.start()
        remaining = size - plan.written
        count = max(1, min(s.connections, -(-remaining // s.min_chunk)))
        try:
            await _run_all([work(job, plan, w) for w in range(count)], guard=guard)
            if not plan.finished:  # workers only stop early by raising; this is a bug guard
                raise RuntimeError(f"workers stopped with {self.file.relpath} unfinished")
            await checkpointer.stop()
            await checkpointer.checkpoint()
            self.progress.enter(Phase.VERIFYING)
            sha = await hasher.finish(size) if hasher is not None else None
        except BaseException:
            if hasher is not None:
                await _quietly(hasher.stop())
            await _quietly(checkpointer.stop())
            await _quietly(self._last_checkpoint(checkpointer))
            raise
        return await self._finish(part, sha, size)

    async def _last_checkpoint(self, checkpointer: Checkpointer) -> None:
        await checkpointer.checkpoint()
        # Everything written is now recorded: the next run need not re-hash the blocks.
        self.file = await self._update(dirty=False)

    async def _stream_whole(self) -> FileRecord:
        """No range support (or no size): one stream, from zero after every failure."""
        await self.journal.note(
            f"{self.file.relpath}: the server "
            + ("gives no size" if self.file.size is None else "does not support ranges")
            + ": downloading in one stream, restarted from zero after any failure",
        )
        await self._replace([], dirty=True, state=FileState.DOWNLOADING)
        policy = self._config.retry
        ceiling = self._config.max_file_size
        if self.file.size is not None:
            await asyncio.to_thread(_check_space, self.part_path, self.file.size)
        part = await PartFile.open(
            self.part_path, self.file.size, truncate=True, preallocate=self._config.preallocate
        )
        try:
            while True:
                # Without a size, the stream may run at most one byte past the ceiling: that
                # byte proves it too large.
                span = Span(0, self.file.size if self.file.size is not None else ceiling + 1)
                hasher = self._hasher(part, lambda span=span: span.done)
                self.progress.written = 0
                self.progress.enter(Phase.DOWNLOADING)
                try:
                    await fetch_whole(self._job(part, hasher, None), span)
                    if self.file.size is not None and span.done != self.file.size:
                        raise TransientError(f"body ended after {span.done} bytes")
                    self._check_size(span.done, "the server sent more than")
                    break
                except TransientError as e:
                    if hasher is not None:
                        await hasher.stop()
                    policy = await policy.next_attempt(
                        e, self.file.url, rng=self.ctx.rng, on_wait=self._note
                    )
                    await part.truncate(self.file.size or 0)
                except BaseException:
                    if hasher is not None:
                        await hasher.stop()
                    raise
            self.progress.enter(Phase.VERIFYING)
            sha = await hasher.finish(span.done) if hasher is not None else None
            await part.sync()
            chunk = ChunkRecord(self.file.id, 0, span.done, span.done, bytes(span.digests))
            self.file = await self._replace([chunk], size=span.done)
            return await self._finish(part, sha, span.done)
        finally:
            await part.close()

    def _job(
        self, part: PartFile, hasher: TrailingSha256 | None, checkpointer: Checkpointer | None
    ) -> RangeJob:
        progress = self.progress

        def received(n: int) -> None:
            progress.fetched += n

        def written(n: int) -> None:
            progress.written += n
            if hasher is not None:
                hasher.poke()
            if checkpointer is not None:
                checkpointer.wrote(n)

        f = self.file
        return RangeJob(
            resource=self.resource,
            part=part,
            block=f.block_size,
            write_size=self._config.write_size,
            expected=Expected(
                size=f.size or 0,
                etag=f.etag,
                last_modified=f.last_modified,
                if_range=if_range_value(f.etag, f.last_modified),
            ),
            limiter=self.ctx.limiter,
            policy=self._config.retry,
            on_received=received,
            on_written=written,
            rng=self.ctx.rng,
            on_wait=self._note,
        )

    def _hasher(self, part: PartFile, prefix: Callable[[], int]) -> TrailingSha256 | None:
        """A SHA-256 trailing the written prefix, where there is a digest to check it against
        (or every file is to get one)."""
        if not (self.file.expected_sha256 or self._config.always_sha256):
            return None
        hasher = TrailingSha256(part, prefix)
        hasher.start()
        return hasher

    # --- after the last byte ------------------------------------------------------------------

    async def _finish(self, part: PartFile, sha: str | None, size: int) -> FileRecord:
        """Every check runs on the ``.part``; only bytes that pass them all take the final
        name (and replace a file there only if that was allowed)."""
        expected = self.file.expected_sha256
        if expected and sha is not None and sha != expected:
            await self._discard(part)
            raise DigestMismatchError(str(self.dest), expected, sha)
        if self._check is not None:
            try:
                await self._check(self.part_path, self.file)
            except ModelhaulError:
                await self._discard(part)
                raise
        # Whatever came to be under the final name while we downloaded is someone's: keep it,
        # and keep our bytes too (allowing the overwrite then finishes at once).
        replaceable = self._overwrite or self.file.meta.get("content_addressed")
        if not replaceable and await asyncio.to_thread(os.path.lexists, self.dest):
            raise DestinationExistsError(str(self.dest), "found there when the download finished")
        await part.finalize(self.dest)
        self.file = await self._update(
            state=FileState.COMPLETED,
            sha256=sha,
            size=size,
            downloaded_bytes=size,
            dirty=False,
            error=None,
        )
        self._done(size)
        return self.file

    async def _discard(self, part: PartFile) -> None:
        """Bytes that failed a check: forget their progress and delete them."""
        await self._replace([], dirty=False)
        await part.close()
        await asyncio.to_thread(_unlink, self.part_path)

    def _done(self, size: int) -> None:
        self.progress.size = size
        self.progress.written = size
        self.progress.enter(Phase.DONE)


async def _run_all(coroutines: list[Any], *, guard: asyncio.Task[None]) -> None:
    """Run workers until all are done. The first failure, of a worker or of ``guard`` (the
    checkpointer, which runs as long as they do), cancels the rest and is raised as itself."""
    tasks = [asyncio.create_task(c) for c in coroutines]
    try:
        pending = set(tasks)
        while pending:
            done, pending = await asyncio.wait(
                pending | {guard}, return_when=asyncio.FIRST_COMPLETED
            )
            for task in done:
                if task.done() and not task.cancelled() and task.exception() is not None:
                    raise task.exception()  # type: ignore[misc]
            pending.discard(guard)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def _quietly(awaitable) -> None:  # type: ignore[no-untyped-def]
    try:
        await awaitable
    except LedgerUnavailableError as e:  # the error that brought us here, most likely
        log.info("cleanup step failed: %s", e)
    except Exception as e:  # cleanup must not hide the error that brought us here
        log.warning("cleanup step failed: %s", e)


def _doomed(file: FileRecord, promised: int) -> RemoteChangedError:
    return RemoteChangedError(
        file.url,
        f"its size is now {file.size}, but the published SHA-256 is for {promised} bytes, so "
        "its bytes can never match it",
        can_restart=False,
    )


def _check_space(path: Path, size: int) -> None:
    """``DiskFullError`` now, before anything is allocated, if the folder of ``path`` cannot
    hold a file of ``size`` bytes (counting what its ``.part`` holds already). Blocking."""
    folder = path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        held = path.stat().st_blocks * 512
    except FileNotFoundError:
        held = 0
    free = shutil.disk_usage(folder).free
    if size - held > free:
        raise DiskFullError(str(path), size, free=free)


def _stat(path: Path) -> os.stat_result | None:
    try:
        return path.stat()
    except FileNotFoundError:
        return None


def _unlink(path: Path) -> None:
    path.unlink(missing_ok=True)
