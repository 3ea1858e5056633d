"""How fast a file's connections run, and what follows from it: which connection is slow
against the others (``Meter``, ``slow``), and how many connections to keep (``Climb``).

Pure arithmetic on samples a crew hands in, no clock and no I/O, so a test can replay any
history.
"""

from __future__ import annotations

import statistics
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TypeVar

K = TypeVar("K")


@dataclass
class Meter:
    """One connection's rate over its last ``window`` seconds of streaming: time spent
    waiting for a connection slot or between requests does not count against it."""

    window: float
    _samples: deque[tuple[float, int]] = field(default_factory=deque)
    _seconds: float = 0.0
    _bytes: int = 0

    def add(self, seconds: float, nbytes: int) -> None:
        """``nbytes`` arrived over ``seconds`` of streaming."""
        self._samples.append((seconds, nbytes))
        self._seconds += seconds
        self._bytes += nbytes
        while self._samples and self._seconds - self._samples[0][0] >= self.window:
            old_seconds, old_bytes = self._samples.popleft()
            self._seconds -= old_seconds
            self._bytes -= old_bytes

    @property
    def full(self) -> bool:
        """Whether a whole window has been seen (only then is the rate judged)."""
        return self._seconds >= self.window * 0.999

    @property
    def seconds(self) -> float:
        """Seconds of streaming seen (up to the window)."""
        return self._seconds

    @property
    def rate(self) -> float:
        """Bytes per second over the window."""
        return self._bytes / self._seconds if self._seconds > 0 else 0.0


def slow(rates: Mapping[K, float], fraction: float, *, least: int = 3) -> list[K]:
    """The keys whose rate is under ``fraction`` of the median of all of them. With fewer
    than ``least`` rates there is no telling slow from normal."""
    if len(rates) < least:
        return []
    median = statistics.median(rates.values())
    if median <= 0:
        return []
    return [key for key, rate in rates.items() if rate < fraction * median]


# An added connection stays if the total rose by at least this share of what one of the
# connections before it carried: half of a fair share, so noise does not count as gain.
GAIN = 0.5
HOLD = 4  # windows to wait after an addition that did not pay before trying again


@dataclass
class Climb:
    """The number of connections a file keeps: more after each window in which the previous
    addition raised the total, back (and a pause) when it did not.

    An addition is a quarter of the count (at least one): 16 -> 20 -> 25 -> 31 -> 32. A CDN
    that caps each connection (as the Hub's does) is used to the per-host limit within four
    windows, not sixteen: one at a time, a file of a few seconds ended before the count had
    moved. Where more connections do not raise the total, a trial costs one window of a
    quarter more connections, then a pause."""

    low: int
    high: int
    target: int
    _before: float | None = None  # the total before the last addition, while on trial
    _added: int = 0  # connections that addition added
    _hold: int = 0

    def observe(self, total: float, busy: bool) -> int:
        """The target after a window with ``total`` bytes per second; ``busy``: every
        connection had work all window (else more connections cannot help)."""
        if not busy:
            if self._before is not None:
                # A trial that cannot be judged (some connections had no work) is taken back
                # whole: nothing showed the added connections paid.
                self._before = None
                self.target -= self._added
            return self.target
        if self._before is not None:
            before, self._before = self._before, None
            had = max(1, self.target - self._added)
            if total < before + GAIN * self._added * before / had:
                self.target -= self._added
                self._hold = HOLD
                return self.target
        elif self._hold > 0:
            self._hold -= 1
            return self.target
        if self.target < self.high:
            self._before = total
            self._added = min(max(1, self.target // 4), self.high - self.target)
            self.target += self._added
        self.target = max(self.low, min(self.high, self.target))
        return self.target
