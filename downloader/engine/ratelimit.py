"""One global rate limit (a token bucket) that every connection of every task draws from."""

from __future__ import annotations

import asyncio
import time


class TokenBucket:
    """Bytes per second with a small burst; ``rate=None`` means unlimited."""

    def __init__(self, rate: float | None, burst_seconds: float = 0.25) -> None:
        if rate is not None and not rate > 0:
            raise ValueError(f"a rate limit must be more than 0 bytes per second, not {rate}")
        self.rate = rate
        self._capacity = (rate or 0) * burst_seconds
        self._tokens = self._capacity
        self._stamp = time.monotonic()
        self._lock = asyncio.Lock()

    async def take(self, amount: int) -> None:
        """Wait until ``amount`` bytes may pass. Callers take what they already received, so
        the bucket may go negative and the debt is paid by sleeping."""
        if self.rate is None or amount <= 0:
            return
        async with self._lock:
            now = time.monotonic()
            self._tokens = min(self._capacity, self._tokens + (now - self._stamp) * self.rate)
            self._stamp = now
            self._tokens -= amount
            if self._tokens < 0:
                await asyncio.sleep(-self._tokens / self.rate)
