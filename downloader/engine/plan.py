"""Which byte ranges of a file are done, in flight or still to fetch; and work stealing.

Pure bookkeeping, no I/O. A file is covered by spans (the ledger's chunks) that never
overlap. Every span starts on a block boundary and ends on one (or at the end of the file),
so each block belongs to exactly one span and its XXH3 digest can be taken as it streams in.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import xxhash

from storage import ChunkRecord

DIGEST_SIZE = 8  # bytes of one XXH3-64 digest
# A new plan never has more chunks than this, whatever the file's size: chunks grow instead.
# Every checkpoint records every chunk, so their number is what a checkpoint costs.
MAX_CHUNKS = 1024


def align_up(value: int, block: int) -> int:
    """The first block boundary at or after ``value``."""
    return -(-value // block) * block


def blocks_in(length: int, block: int) -> int:
    """How many blocks (the last one possibly short) cover ``length`` bytes."""
    return -(-length // block)


@dataclass(eq=False)
class Span:
    """A live chunk: ``[start, end)``, ``done`` bytes written from ``start``, one digest per
    complete block, the running XXH3 of the block being written, and ``pos``, how far its
    owner has received.

    ``tail`` is that running XXH3's digest as of ``done`` (empty at a block boundary or at
    the end). It is taken on the event loop right after each write returns, never while a
    write's thread feeds ``hasher``, so a checkpoint reads a digest that matches ``done``.
    ``seeded`` is False for a span rebuilt from the ledger with a partial block whose
    ``hasher`` has not yet been fed that block's prefix from the ``.part`` (see
    ``downloader.engine.hashing.seed_tails``): no byte may be written into it before."""

    start: int
    end: int
    done: int = 0
    digests: bytearray = field(default_factory=bytearray)
    owner: int | None = None
    pos: int = -1
    hasher: xxhash.xxh3_64 = field(default_factory=xxhash.xxh3_64)
    # Who served the written bytes, where a file has several sources: (offset, url) pairs.
    sources: list[tuple[int, str]] = field(default_factory=list)
    tail: bytes = b""
    seeded: bool = True

    def __post_init__(self) -> None:
        if self.pos < 0:
            self.pos = self.start + self.done

    @property
    def finished(self) -> bool:
        """Every byte written."""
        return self.start + self.done >= self.end

    @property
    def remaining(self) -> int:
        """Bytes not yet received."""
        return max(0, self.end - self.pos)

    def served(self, at: int, url: str) -> None:
        """Bytes from ``at`` on came from ``url``."""
        if not self.sources or self.sources[-1][1] != url:
            self.sources.append((at, url))

    def wrote(self, block: int) -> None:
        """A write into this span returned: note the partial block's digest as of ``done``."""
        partial = self.done % block and not self.finished
        self.tail = self.hasher.digest() if partial else b""

    def record(self, file_id: int, block: int) -> ChunkRecord:
        """This span as the ledger stores it: its digested blocks and, where ``done`` ends
        mid-block, the partial block's prefix with its digest last in ``xxh3``, so a kill
        loses only what was written after the last checkpoint, not the blocks in progress."""
        whole = len(self.digests) // DIGEST_SIZE * block
        digests = bytes(self.digests)
        if self.done <= whole:
            durable = self.done
        elif self.tail and self.done - whole < block:
            durable, digests = self.done, digests + self.tail
        else:  # no digest vouches for the bytes past the last whole block
            durable = whole
        sources = tuple(p for p in self.sources if p[0] < self.start + durable)
        return ChunkRecord(file_id, self.start, self.end, durable, digests, sources)


class Plan:
    """The spans of one file and who works on which."""

    def __init__(self, size: int, block: int, spans: Sequence[Span], min_steal: int) -> None:
        self.size = size
        self.block = block
        self.min_steal = max(min_steal, 2 * block)
        self._spans = sorted(spans, key=lambda s: s.start)
        self._starts = [s.start for s in self._spans]
        _check_cover(size, self._spans)

    @classmethod
    def fresh(
        cls,
        size: int,
        *,
        connections: int,
        block: int,
        min_chunk: int,
        max_chunk: int,
        min_steal: int,
    ) -> Plan:
        """Cut a new file into chunks of about ``size / (4 * connections)``: several per
        connection, handed out in file order so that the contiguous prefix (which the SHA-256
        hasher trails) grows steadily, while a chunk stays long enough that a new request per
        chunk costs little. Never more than ``MAX_CHUNKS`` of them."""
        target = min(max_chunk, max(min_chunk, size // max(1, 4 * connections)))
        target = max(target, -(-size // MAX_CHUNKS))
        chunk = max(block, align_up(target, block))
        spans = [Span(start, min(size, start + chunk)) for start in range(0, size, chunk)]
        return cls(size, block, spans or [Span(0, 0)], min_steal)

    @classmethod
    def from_chunks(
        cls, size: int, block: int, chunks: Iterable[ChunkRecord], min_steal: int
    ) -> Plan:
        """Rebuild the plan from the ledger; raises ValueError if the chunks are inconsistent."""
        spans = []
        for c in chunks:
            if len(c.xxh3) != DIGEST_SIZE * blocks_in(c.done, block):
                raise ValueError(f"chunk at {c.start} has {len(c.xxh3)} digest bytes for {c.done}")
            span = Span(c.start, c.end, c.done, bytearray(c.xxh3), sources=[*c.sources])
            if c.done % block and not c.finished:  # a partial block: its digest is the last
                whole = c.done // block * DIGEST_SIZE
                span.digests, span.tail = bytearray(c.xxh3[:whole]), c.xxh3[whole:]
                span.seeded = False
            spans.append(span)
        return cls(size, block, spans, min_steal)

    def drop_tail(self, span: Span) -> int:
        """``span``'s partial block did not match its digest: back to its last whole block.
        Returns the bytes given up."""
        lost = span.done % self.block if not span.finished else 0
        span.done -= lost
        span.pos = span.start + span.done
        span.tail = b""
        span.hasher = xxhash.xxh3_64()
        span.seeded = True
        return lost

    @property
    def spans(self) -> tuple[Span, ...]:
        """All spans in byte order."""
        return tuple(self._spans)

    @property
    def written(self) -> int:
        """Bytes written to the file so far."""
        return sum(s.done for s in self._spans)

    @property
    def finished(self) -> bool:
        """Every span written."""
        return all(s.finished for s in self._spans)

    def prefix(self) -> int:
        """Length of the contiguous written prefix of the file."""
        for s in self._spans:
            if not s.finished:
                return s.start + s.done
        return self.size

    def acquire(self, worker: int) -> Span | None:
        """The next span for ``worker``: the first unowned one in file order, else half of
        the largest range another worker still has to receive, else None (nothing left)."""
        for s in self._spans:
            if s.owner is None and not s.finished:
                s.owner = worker
                s.pos = s.start + s.done
                return s
        return self._steal(worker)

    def release(self, span: Span, worker: int | None = None) -> None:
        """``span``'s worker stopped working on it. With ``worker``, only if it still owns
        the span: a span handed to another connection meanwhile stays theirs."""
        if worker is not None and span.owner != worker:
            return
        span.owner = None
        span.pos = span.start + span.done

    def has_work(self) -> bool:
        """Whether ``acquire`` would find something: an unowned unfinished span, or a range
        large enough to steal."""
        return any(
            (s.owner is None and not s.finished)
            or (s.owner is not None and s.remaining >= self.min_steal)
            for s in self._spans
        )

    def split(self, span: Span, at: int, worker: int) -> Span | None:
        """Cut ``span`` at ``at`` (rounded up to a block): its owner keeps what comes before,
        ``worker`` gets the rest as a new span. None when nothing past what its owner has
        received is left to cut off."""
        at = align_up(max(at, span.pos), self.block)
        if not span.start + span.done <= span.pos <= at < span.end:
            return None
        new = Span(at, span.end, owner=worker)
        span.end = at
        i = bisect.bisect(self._starts, at)
        self._spans.insert(i, new)
        self._starts.insert(i, at)
        return new

    def shadow(self, span: Span) -> Span:
        """A second fetch of ``span``'s unfinished tail, from the last block it digested: a
        span outside the plan, so two connections never write into one span's digests.
        ``adopt`` takes it in if it finishes first."""
        digested = len(span.digests) // DIGEST_SIZE * self.block
        return Span(span.start + digested, span.end)

    def adopt(self, span: Span, shadow: Span) -> int:
        """``shadow`` finished before ``span``'s own fetch (which was stopped): its blocks
        stand for ``span``'s from where it began. Both fetches asked for the same bytes of
        the same version (``If-Range``), so whichever of their writes lands last leaves the
        file the same. Returns how many bytes ``span`` gained."""
        skip = shadow.start - span.start
        if skip % self.block or shadow.end < span.end or not shadow.finished:
            raise ValueError(f"shadow {shadow.start}-{shadow.end} cannot stand for {span.start}")
        kept = span.digests[: skip // self.block * DIGEST_SIZE]
        if len(kept) * self.block != skip * DIGEST_SIZE:
            raise ValueError(f"span at {span.start} has not digested up to {shadow.start}")
        gained = span.end - span.start - span.done
        own = blocks_in(span.end - shadow.start, self.block) * DIGEST_SIZE
        span.digests = kept + shadow.digests[:own]
        span.sources = [p for p in span.sources if p[0] < shadow.start] + shadow.sources
        span.done = span.end - span.start
        span.pos = span.end
        span.tail = b""
        span.hasher = xxhash.xxh3_64()  # the stopped fetch's write may still feed the old one
        return gained

    def _steal(self, worker: int) -> Span | None:
        victims = [s for s in self._spans if s.owner is not None and s.remaining >= self.min_steal]
        if not victims:
            return None
        victim = max(victims, key=lambda s: s.remaining)
        return self.split(victim, victim.pos + victim.remaining // 2, worker)

    def records(self, file_id: int) -> tuple[ChunkRecord, ...]:
        """Every span as the ledger stores it."""
        return tuple(s.record(file_id, self.block) for s in self._spans)


def repair(chunks: Sequence[ChunkRecord], bad: set[int], block: int) -> list[ChunkRecord]:
    """Chunks with the blocks starting at the offsets in ``bad`` made un-done again.

    A chunk's done part is cut around each bad block: the good runs stay done (as chunks of
    their own), each bad block becomes a chunk to fetch, and the unfinished tail stays as it
    was, so nothing verified good is fetched twice. A done part that ends mid-block keeps
    the unfinished rest in its last good run, since a chunk starts on a block boundary.
    """
    out: list[ChunkRecord] = []
    for c in sorted(chunks, key=lambda c: c.start):
        written_end = c.start + c.done
        cuts = sorted(b for b in bad if c.start <= b < written_end)
        if not cuts:
            out.append(c)
            continue
        run_start = c.start
        for b in cuts:
            if b > run_start:
                out.append(_done_run(c, run_start, b, block))
            out.append(ChunkRecord(c.file_id, b, min(b + block, c.end)))
            run_start = min(b + block, c.end)
        partial = (written_end - c.start) % block and written_end < c.end
        if run_start < written_end:
            until = c.end if partial else written_end
            out.append(_done_run(c, run_start, written_end, block, until))
            run_start = until
        if run_start < c.end:  # past a bad partial block, or the unwritten tail
            out.append(ChunkRecord(c.file_id, max(run_start, written_end), c.end))
    return out


def _done_run(
    c: ChunkRecord, start: int, end: int, block: int, until: int | None = None
) -> ChunkRecord:
    """``c``'s done bytes ``[start, end)`` as a chunk of their own (reaching ``until``)."""
    first = (start - c.start) // block
    last = blocks_in(end - c.start, block)
    digests = c.xxh3[first * DIGEST_SIZE : last * DIGEST_SIZE]
    sources = sources_within(c, start, end)
    return ChunkRecord(c.file_id, start, until or end, end - start, digests, sources)


def sources_within(c: ChunkRecord, start: int, end: int) -> tuple[tuple[int, str], ...]:
    """``c``'s sources of the bytes ``[start, end)``: the one serving at ``start`` (moved
    to it), then those that began inside."""
    before = [p for p in c.sources if p[0] <= start]
    inside = [p for p in c.sources if start < p[0] < end]
    return ((start, before[-1][1]), *inside) if before else tuple(inside)


def served_blocks(chunks: Iterable[ChunkRecord], block: int) -> dict[str, set[int]]:
    """Which blocks (by offset) each recorded source served bytes of."""
    out: dict[str, set[int]] = {}
    for at, until, url in _runs(chunks):
        out.setdefault(url, set()).update(range(at - at % block, until, block))
    return out


def served_bytes(chunks: Iterable[ChunkRecord]) -> dict[str, int]:
    """How many recorded bytes each source served."""
    out: dict[str, int] = {}
    for at, until, url in _runs(chunks):
        out[url] = out.get(url, 0) + until - at
    return out


def _runs(chunks: Iterable[ChunkRecord]) -> Iterable[tuple[int, int, str]]:
    """``(start, end, url)`` of each run of done bytes one source served."""
    for c in chunks:
        if not c.sources:
            continue
        written = c.start + c.done
        bounds = [p[0] for p in c.sources[1:]] + [written]
        for (at, url), until in zip(c.sources, bounds, strict=True):
            if min(until, written) > at:
                yield at, min(until, written), url


def _check_cover(size: int, spans: Sequence[Span]) -> None:
    at = 0
    for s in spans:
        if s.start != at or s.end < s.start or s.done > s.end - s.start:
            raise ValueError(f"chunks do not tile the file: gap, overlap or overrun at byte {at}")
        at = s.end
    if at != size:
        raise ValueError(f"chunks cover {at} bytes of a {size}-byte file")
