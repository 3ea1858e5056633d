"""The retry vocabulary: which failures another attempt may fix, and the policy that says how
often and after how long. One immutable object, a new one per attempt (in the spirit of
urllib3's ``Retry``), so it can be built in a test and reasoned about without a network."""

from __future__ import annotations

import asyncio
import email.utils
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from downloader.errors import RetriesExhaustedError

# Statuses another attempt may fix (any other 5xx too); every other 4xx is final.
RETRYABLE_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})
NOTE_AFTER = 2.0  # a wait at least this long is shown in the progress, not slept in silence


class TransientError(Exception):
    """A failure that another attempt may fix (connection reset, 503, stall, …).
    ``unreachable``: no connection could be made at all (refused, no route, a DNS outage)."""

    def __init__(
        self, message: str, *, retry_after: float | None = None, unreachable: bool = False
    ) -> None:
        self.retry_after = retry_after
        self.unreachable = unreachable
        super().__init__(message)


@dataclass(frozen=True, slots=True)
class Attempt:
    """One failed attempt: what went wrong and what the server asked for."""

    error: str
    retry_after: float | None = None
    unreachable: bool = False


class RetriesExhausted(Exception):
    """Raised by ``RetryPolicy.increment`` when the budget is spent."""

    def __init__(self, policy: RetryPolicy) -> None:
        self.policy = policy
        last = policy.history[-1].error if policy.history else "unknown error"
        super().__init__(f"{len(policy.history)} attempts failed; last: {last}")


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How many consecutive failures without progress to tolerate, and how long to wait.

    ``attempts`` counts failures since bytes last flowed: a download that keeps making
    progress through flaky connections never runs out (callers ``reset()`` on progress).
    Backoff is exponential with full jitter: ``uniform(0, min(backoff_max, factor * 2**n))``,
    except that a server's ``Retry-After`` (429/503) is honoured up to ``retry_after_max``.

    A host never reached (refused, no route) before any byte came is given only
    ``unreachable_attempts`` quick tries, a few seconds in all, as curl and aria2c give up
    at once: a typo'd port should not take a minute to say so. Once bytes have flowed
    (``reset``), a refused connection is a server restarting, with the whole budget.
    """

    attempts: int = 8
    backoff_factor: float = 0.5
    backoff_max: float = 20.0
    retry_after_max: float = 600.0  # a server asking for longer is asked again after this
    statuses: frozenset[int] = RETRYABLE_STATUSES
    unreachable_attempts: int = 3
    history: tuple[Attempt, ...] = field(default=())
    reached: bool = False  # bytes have come from the remote since this policy began

    def is_retry(self, status: int) -> bool:
        """Whether an HTTP ``status`` is worth another attempt (any 5xx is)."""
        return status in self.statuses or status >= 500

    def increment(
        self, error: str, retry_after: float | None = None, *, unreachable: bool = False
    ) -> RetryPolicy:
        """The policy after one more failure; raises ``RetriesExhausted`` past the budget."""
        new = replace(self, history=(*self.history, Attempt(error, retry_after, unreachable)))
        if len(new.history) > self.attempts:
            raise RetriesExhausted(new)
        never_reached = not self.reached and all(a.unreachable for a in new.history)
        if never_reached and len(new.history) > self.unreachable_attempts:
            raise RetriesExhausted(new)
        return new

    def reset(self) -> RetryPolicy:
        """The policy after progress: a full budget again."""
        return replace(self, history=(), reached=True)

    def knowing_reached(self) -> RetryPolicy:
        """The same budget, knowing the remote has been reached (by another connection)."""
        return replace(self, reached=True)

    def backoff(self, rng: random.Random | None = None) -> float:
        """Seconds to wait before the next attempt."""
        if not self.history:
            return 0.0
        last = self.history[-1]
        if last.retry_after is not None:
            return min(max(0.0, last.retry_after), self.retry_after_max)
        ceiling = min(self.backoff_max, self.backoff_factor * 2 ** (len(self.history) - 1))
        if last.unreachable and not self.reached:
            ceiling = min(ceiling, 2.0)  # the quick tries: seconds in all
        return (rng or random).uniform(0.0, ceiling)

    async def next_attempt(
        self,
        error: TransientError,
        url: str,
        *,
        rng: random.Random | None = None,
        on_wait: Callable[[str | None], None] | None = None,
    ) -> RetryPolicy:
        """Record ``error`` as one more failed attempt at ``url``, sleep the backoff (a long
        wait announced through ``on_wait``), and return the policy for the next attempt.
        Past the budget, ``RetriesExhaustedError`` instead, naming the URL and the last error.
        """
        try:
            policy = self.increment(str(error), error.retry_after, unreachable=error.unreachable)
        except RetriesExhausted as e:
            raise RetriesExhaustedError(url, len(e.policy.history), str(error)) from e
        await policy.sleep(rng, on_wait)
        return policy

    async def sleep(
        self,
        rng: random.Random | None = None,
        on_wait: Callable[[str | None], None] | None = None,
    ) -> None:
        """Sleep the backoff; a long wait is announced through ``on_wait`` (and the
        announcement withdrawn once it is over, or if the sleep is cancelled)."""
        delay = self.backoff(rng)
        note = wait_note(self, delay)
        if note is not None and on_wait is not None:
            on_wait(note)
        try:
            await asyncio.sleep(delay)
        finally:
            if note is not None and on_wait is not None:
                on_wait(None)


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or an HTTP date), else None."""
    if not value:
        return None
    value = value.strip()[:64]
    if value.isascii() and value.isdigit():
        return float(value) if len(value) < 16 else math.inf  # "forever": capped by the policy
    try:
        when = email.utils.parsedate_to_datetime(value)
        return max(0.0, when.timestamp() - (time.time() if now is None else now))
    except (TypeError, ValueError, OverflowError, OSError):
        return None


def wait_note(policy: RetryPolicy, delay: float) -> str | None:
    """What a user should read while ``delay`` seconds pass before the next attempt (None
    for waits too short to mention)."""
    if delay < NOTE_AFTER or not policy.history:
        return None
    last = policy.history[-1]
    if last.retry_after is None:
        return f"retrying in {delay:.0f} s after: {last.error}"
    if last.retry_after > delay:
        return (
            f"server asked to wait {last.retry_after:.0f} s ({last.error}); "
            f"trying again in {delay:.0f} s"
        )
    return f"server asked to wait {delay:.0f} s ({last.error})"
