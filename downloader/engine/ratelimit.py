"""Rate limits as token buckets: one global that every connection of every task draws
from, and one per task (a "lane", limited or not) that draws from both.

Rates change while bytes flow (``set_rate``: the live limit, ``modelhaul limit``): a take
that waits re-plans its wait at once, so a faster limit is felt within the same second
instead of after a debt run up at the old one.

Fairness: a lane holds its own lock while it waits in the global bucket, so each task has
at most one take queued there; the global lock is first come, first served, so tasks take
turns, whatever their count of connections.
"""

from __future__ import annotations

import asyncio
import contextlib
import time


class TokenBucket:
    """Bytes per second with a small burst; ``rate=None`` means unlimited."""

    def __init__(
        self, rate: float | None, burst_seconds: float = 0.25, *, within: TokenBucket | None = None
    ) -> None:
        _check(rate)
        self.rate = rate
        self._within = within  # a wider limit these bytes count against too (the global one)
        self._burst = burst_seconds
        self._capacity = (rate or 0) * burst_seconds
        self._tokens = 0.0  # no burst at the start: it would only fill socket buffers
        self._stamp = time.monotonic()
        self._lock = asyncio.Lock()
        self._changed = asyncio.Event()

    def set_rate(self, rate: float | None) -> None:
        """Change the rate now; a take waiting for tokens re-plans at the new rate. Debt run
        up at the old rate is kept (a slower limit is not dodged), forgiven when the limit
        is lifted."""
        _check(rate)
        if rate == self.rate:
            return
        self._refill()
        self.rate = rate
        self._capacity = (rate or 0) * self._burst
        self._tokens = min(self._tokens, self._capacity) if rate is not None else 0.0
        self._changed.set()

    @property
    def limited(self) -> bool:
        """Whether a rate holds these bytes back (this bucket's, or a wider one's)."""
        return self.rate is not None or (self._within is not None and self._within.limited)

    async def take(self, amount: int) -> None:
        """Wait until ``amount`` bytes may pass. Callers take what they already received, so
        the bucket may go negative and the debt is paid by sleeping."""
        if amount <= 0:
            return
        if self.rate is None and self._within is None:
            return
        async with self._lock:
            if self._within is not None:
                await self._within.take(amount)
            if self.rate is None:
                return
            self._refill()
            self._tokens -= amount
            while self.rate is not None and self._tokens < 0:
                self._changed.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(-self._tokens / self.rate):
                        await self._changed.wait()
                self._refill()

    def _refill(self) -> None:
        now = time.monotonic()
        if self.rate is not None:
            self._tokens = min(self._capacity, self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now


def _check(rate: float | None) -> None:
    if rate is not None and not rate > 0:
        raise ValueError(f"a rate limit must be more than 0 bytes per second, not {rate}")
