"""What a download works with: what every download of a process shares (``EngineContext``),
and one file's run (``FileRun``): its record as last written, its journal, its paths, its
progress, and the few steps every way of fetching it takes (probe, write, hash)."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from downloader.engine.checkpoint import Checkpointer
from downloader.engine.config import EngineConfig
from downloader.engine.fetch import Expected, RangeJob
from downloader.engine.hashing import TrailingSha256
from downloader.engine.http import Resource
from downloader.engine.journal import FileJournal
from downloader.engine.partfile import PartFile, partial_path
from downloader.engine.probe import Probe, if_range_value, probe
from downloader.engine.progress import FileProgress, Phase
from downloader.engine.ratelimit import TokenBucket
from downloader.engine.retry import TransientError
from downloader.errors import TooLargeError, TransferError
from storage import ChunkRecord, FileRecord

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
    # Mirror hosts (scheme://netloc) that did not answer a probe -> until when (monotonic)
    # they are skipped: one silent peer must not cost every file of a repo its timeout.
    unreachable: dict[str, float] = field(default_factory=dict)


@dataclass(eq=False)
class FileRun:
    """One file while it is downloaded. ``file`` is its record as the journal last returned
    it; every write goes through the journal and refreshes it."""

    ctx: EngineContext
    file: FileRecord
    journal: FileJournal
    resource: Resource
    progress: FileProgress
    overwrite: bool = False  # a different file under the final name may be replaced
    check: FileCheck | None = None
    mirrors: tuple[Resource, ...] = ()  # more URLs of the same bytes, after ``resource``
    preferred: frozenset[str] = frozenset()  # those of them asked alone while they answer
    written_on: str | None = None  # the other host that wrote the recorded progress, if any

    @property
    def config(self) -> EngineConfig:
        """The engine's tunables."""
        return self.ctx.config

    @property
    def dest(self) -> Path:
        """The final name."""
        return Path(self.file.local_path)

    @property
    def part_path(self) -> Path:
        """Where the bytes go until every check passed (named as the file's source asks)."""
        return partial_path(self.file)

    @property
    def wants_sha256(self) -> bool:
        """Whether a SHA-256 is taken: there is a digest to check, or every file gets one."""
        return bool(self.file.expected_sha256 or self.config.always_sha256)

    @property
    def replaceable(self) -> bool:
        """Whether a file under the final name may give way: the task allows overwriting, or
        it is a store named by digest, where the right name with other bytes is damage."""
        return bool(self.overwrite or self.file.meta.get("content_addressed"))

    async def update(self, **fields: Any) -> FileRecord:
        """Write file columns through the journal."""
        self.file = await self.journal.update(**fields)
        return self.file

    async def replace(self, chunks: Sequence[ChunkRecord], **fields: Any) -> FileRecord:
        """Write a new chunk plan (and file columns) through the journal."""
        self.file = await self.journal.replace_chunks(chunks, **fields)
        return self.file

    def check_size(self, size: int | None, who: str) -> None:
        """Refuse a size past the ceiling before anything is planned or allocated for it."""
        if size is not None and size > self.config.max_file_size:
            raise TooLargeError(self.file.url, size, self.config.max_file_size, who)

    async def probe(self) -> None:
        """Ask the server for size, range support and validators (retrying transient
        failures), and record what it says. When the file's URL fails past its retries and
        the file has mirrors, the first mirror that answers serves as the file's URL."""
        self.progress.enter(Phase.PROBING)
        try:
            found = await self._probe(self.resource)
        except TransferError as e:
            if not self.mirrors:
                raise
            found = await self._probe_mirrors(e)
        self.check_size(found.size, "the server announces")
        meta = {k: v for k, v in self.file.meta.items() if k != "validated_by"}
        if self.resource.url != self.file.url:
            meta["validated_by"] = self.resource.url  # whose validators the record holds
        await self.update(
            size=found.size,
            etag=found.etag,
            last_modified=found.last_modified,
            accept_ranges=found.ranges,
            **({"meta": meta} if meta != self.file.meta else {}),
        )
        self.progress.size = found.size

    async def _probe(self, resource: Resource) -> Probe:
        policy = self.config.retry
        while True:
            try:
                return await probe(resource)
            except TransientError as e:
                policy = await policy.next_attempt(
                    e, resource.url, rng=self.ctx.rng, on_wait=self.progress.announce
                )

    async def _probe_mirrors(self, failure: TransferError) -> Probe:
        """The first mirror (peers last) that answers a probe becomes the file's
        URL for this run; the file's own URL is kept as a mirror. ``failure`` is raised
        when none answers."""
        # The mirrors the user named before peers: whose answer the record keeps (its size,
        # when none was known) should come from the most trusted source that answers.
        order = sorted(self.mirrors, key=lambda r: r.url in self.preferred)
        for resource in order:
            try:
                found = await asyncio.wait_for(probe(resource), timeout=30)
            # One try each: the URL that failed had its retries, and the next mirror is
            # there to try instead.
            except (TransferError, TransientError, TimeoutError, OSError):
                continue
            if self.file.size is not None and found.size != self.file.size:
                continue  # not the bytes the source described
            await self.journal.note(
                f"{self.file.url} failed ({failure}); {resource.url} serves the file instead"
            )
            self.mirrors = (*(r for r in self.mirrors if r is not resource), self.resource)
            self.resource = resource
            return found
        raise failure

    def job(
        self, part: PartFile, hasher: TrailingSha256 | None, checkpointer: Checkpointer | None
    ) -> RangeJob:
        """What the fetch workers of this file share: where to write, what the remote must
        still be, and whom to tell about bytes received and written."""
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
            write_size=self.config.write_size,
            read_buffer=self.config.read_buffer,
            # A quarter of the checkpoint interval: so bytes held back for a fuller write
            # add little to what a kill between two checkpoints costs.
            write_seconds=self.config.checkpoint_seconds / 4,
            expected=Expected(
                size=f.size or 0,
                etag=f.etag,
                last_modified=f.last_modified,
                if_range=if_range_value(f.etag, f.last_modified),
                # Ranges not known yet, yet fetched by ranges: the file was not probed.
                stand_in=f.accept_ranges is None,
            ),
            limiter=self.ctx.limiter,
            policy=self.config.retry,
            on_received=received,
            on_written=written,
            rng=self.ctx.rng,
            on_wait=progress.announce,
        )

    def hasher(self, part: PartFile, prefix: Callable[[], int]) -> TrailingSha256 | None:
        """A SHA-256 trailing the written prefix (already following it), where one is
        wanted."""
        if not self.wants_sha256:
            return None
        hasher = TrailingSha256(part, prefix)
        hasher.start()
        return hasher
