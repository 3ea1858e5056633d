"""The retry policy: one immutable object, a new one per attempt (in the spirit of urllib3's
``Retry``), so it can be built in a test and reasoned about without a network."""

from __future__ import annotations

import email.utils
import random
import time
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
    value = value.strip()
    if value.isascii() and value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))
