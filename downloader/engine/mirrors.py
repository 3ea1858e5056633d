"""The mirrors of one file: several URLs serving the same bytes, each range request sent to
one of them. A mirror is checked by its own probe (the same size as the first URL), then
given connections in proportion to the rate it has shown per connection (round-robin until
it has shown one). Preferred mirrors (peers, a Hub mirror tried first) take every
connection while one of them is live. One that disagrees (size, a changed validator), or
fails past its retries, is dropped for this file: its spans go back to the plan, and the
others fetch them. Which source served which bytes is recorded with the chunks
(``Span.served``), in the ledger."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from downloader.engine.http import Resource
from downloader.engine.probe import if_range_value, probe
from downloader.engine.retry import TransientError
from downloader.errors import TransferError

MEASURED = 0.5  # connection-seconds a mirror needs before its rate counts


@dataclass(frozen=True, slots=True)
class Validators:
    """What one mirror said about its copy: range requests to it carry these (``If-Range``)
    and a response with others means its copy changed."""

    etag: str | None
    last_modified: str | None

    @property
    def if_range(self) -> str | None:
        return if_range_value(self.etag, self.last_modified)


@dataclass(eq=False)
class Mirror:
    """One URL of a file, what it said at its probe, and what it has served."""

    resource: Resource
    validators: Validators
    preferred: bool = False  # asked alone while it is live (a peer, a near mirror)
    received: int = 0  # body bytes from it, this run
    dropped: str | None = None  # why it is no longer asked
    lanes: int = 0  # connections bound to it now
    _spent: float = 0.0  # connection-seconds of finished fetches
    _active: dict[int, float] = field(default_factory=dict)  # fetch id -> start

    @property
    def url(self) -> str:
        return self.resource.url

    def rate(self, now: float) -> float | None:
        """Bytes per second per connection, once measured long enough."""
        spent = self._spent + sum(now - t for t in self._active.values())
        return self.received / spent if spent >= MEASURED else None


class AllMirrorsFailedError(TransferError):
    """Every URL of a file was dropped: the file fails, naming each and why."""

    def __init__(self, mirrors: list[Mirror]) -> None:
        reasons = "; ".join(f"{m.url}: {m.dropped}" for m in mirrors)
        super().__init__(f"every mirror of this file failed ({reasons})", url=mirrors[0].url)


class Mirrors:
    """The mirrors of one file while its ranges are fetched. ``on_drop`` writes a dropped
    mirror into the task's history."""

    def __init__(
        self,
        mirrors: list[Mirror],
        on_drop: Callable[[str], Awaitable[None]],
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.all = mirrors
        self._on_drop = on_drop
        self._clock = clock

    def live(self) -> list[Mirror]:
        return [m for m in self.all if m.dropped is None]

    def pick(self) -> Mirror:
        """The live mirror that should take the next connection: among the preferred ones
        while any is live, the one with the fewest connections for its rate (an unmeasured
        mirror counts as the fastest)."""
        live = self.live()
        if not live:
            raise AllMirrorsFailedError(self.all)
        live = [m for m in live if m.preferred] or live
        now = self._clock()
        rates = {id(m): m.rate(now) for m in live}
        best = max((r for r in rates.values() if r is not None), default=1.0) or 1.0
        chosen = min(live, key=lambda m: (m.lanes + 1) / max(rates[id(m)] or best, 1.0))
        chosen.lanes += 1
        return chosen

    def begin(self, mirror: Mirror, key: int) -> None:
        mirror._active[key] = self._clock()

    def end(self, mirror: Mirror, key: int) -> None:
        start = mirror._active.pop(key, None)
        if start is not None:
            mirror._spent += self._clock() - start
        mirror.lanes = max(0, mirror.lanes - 1)

    async def drop(self, mirror: Mirror, why: str) -> None:
        """Stop asking ``mirror`` for this file (once, with a note); raises when it was the
        last one."""
        if mirror.dropped is None:
            mirror.dropped = why[:300]
            left = len(self.live())
            await self._on_drop(
                f"mirror {mirror.url} dropped for this file: {mirror.dropped}"
                + (f"; {left} mirror(s) left take its ranges" if left else "")
            )
        if not self.live():
            raise AllMirrorsFailedError(self.all)


@dataclass(frozen=True, slots=True)
class MirrorCheck:
    """What one probe of a mirror found: its validators, or why it cannot serve the file's
    ranges and whether that is because it did not answer at all."""

    resource: Resource
    validators: Validators | None
    why: str | None = None
    unreachable: bool = False


async def check_mirror(resource: Resource, size: int, *, within: float = 30) -> MirrorCheck:
    """Probe one more URL of a file once: its validators, or why it cannot serve the file's
    ranges (unreachable, no ranges, another size)."""
    try:
        found = await asyncio.wait_for(probe(resource), timeout=within)
    # One try only: the file has other URLs, and a mirror that cannot answer a probe is
    # not worth a retry budget.
    except TransferError as e:
        return MirrorCheck(resource, None, f"probe failed: {e}")
    except (TransientError, TimeoutError, OSError) as e:
        why = f"no answer within {within:g} s" if isinstance(e, TimeoutError) else str(e)
        return MirrorCheck(resource, None, f"probe failed: {why}", unreachable=True)
    if not found.ranges:
        return MirrorCheck(resource, None, "it does not serve byte ranges")
    if found.size != size:
        return MirrorCheck(resource, None, f"it announces {found.size} bytes, not {size}")
    return MirrorCheck(resource, Validators(found.etag, found.last_modified))
