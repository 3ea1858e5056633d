"""Rate limits as token buckets: one global that every connection of every task draws
from, and, for a task that asks for its own, one of the task's that draws from both."""

from __future__ import annotations

import asyncio
import time


class TokenBucket:
    """Bytes per second with a small burst; ``rate=None`` means unlimited."""

    def __init__(
        self, rate: float | None, burst_seconds: float = 0.25, *, within: TokenBucket | None = None
    ) -> None:
        if rate is not None and not rate > 0:
            raise ValueError(f"a rate limit must be more than 0 bytes per second, not {rate}")
        self.rate = rate
        self._within = within  # a wider limit these bytes count against too (the global one)
        self._capacity = (rate or 0) * burst_seconds
        self._tokens = self._capacity
        self._stamp = time.monotonic()
        self._lock = asyncio.Lock()

    async def take(self, amount: int) -> None:
        """Wait until ``amount`` bytes may pass. Callers take what they already received, so
        the bucket may go negative and the debt is paid by sleeping."""
        if self._within is not None:
            await self._within.take(amount)
        if self.rate is None or amount <= 0:
            return
        async with self._lock:
            now = time.monotonic()
            self._tokens = min(self._capacity, self._tokens + (now - self._stamp) * self.rate)
            self._stamp = now
            self._tokens -= amount
            if self._tokens < 0:
                await asyncio.sleep(-self._tokens / self.rate)
