"""The retry policy: one immutable object, a new one per attempt (in the spirit of urllib3's
``Retry``), so it can be built in a test and reasoned about without a network."""

from __future__ import annotations

import asyncio
import email.utils
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace


@dataclass(frozen=True, slots=True)
class Attempt:
    """One failed attempt: what went wrong and what the server asked for."""

    error: str
    retry_after: float | None = None


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
    """

    attempts: int = 8
    backoff_factor: float = 0.5
    backoff_max: float = 20.0
    retry_after_max: float = 600.0  # a server asking for longer is asked again after this
    history: tuple[Attempt, ...] = field(default=())

    def increment(self, error: str, retry_after: float | None = None) -> RetryPolicy:
        """The policy after one more failure; raises ``RetriesExhausted`` past the budget."""
        new = replace(self, history=(*self.history, Attempt(error, retry_after)))
        if len(new.history) > self.attempts:
            raise RetriesExhausted(new)
        return new

    def reset(self) -> RetryPolicy:
        """The policy after progress: a full budget again."""
        return replace(self, history=())

    def backoff(self, rng: random.Random | None = None) -> float:
        """Seconds to wait before the next attempt."""
        if not self.history:
            return 0.0
        last = self.history[-1]
        if last.retry_after is not None:
            return min(max(0.0, last.retry_after), self.retry_after_max)
        ceiling = min(self.backoff_max, self.backoff_factor * 2 ** (len(self.history) - 1))
        return (rng or random).uniform(0.0, ceiling)


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


NOTE_AFTER = 2.0  # a wait at least this long is shown in the progress, not slept in silence


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


async def sleep_before_retry(
    policy: RetryPolicy,
    rng: random.Random | None = None,
    on_wait: Callable[[str | None], None] | None = None,
) -> None:
    """Sleep the policy's backoff; a long wait is announced through ``on_wait`` (and the
    announcement withdrawn once it is over, or if the sleep is cancelled)."""
    delay = policy.backoff(rng)
    note = wait_note(policy, delay)
    if note is not None and on_wait is not None:
        on_wait(note)
    try:
        await asyncio.sleep(delay)
    finally:
        if note is not None and on_wait is not None:
            on_wait(None)
