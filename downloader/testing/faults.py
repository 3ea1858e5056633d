"""What the test origin can do wrong on purpose (``Fault`` rules by ``FaultKind``), and the
range semantics it otherwise gets right (``Range``, ``If-Range``)."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime


class FaultKind(enum.StrEnum):
    """What can go wrong with one response."""

    RESET = "reset"  # connection reset after ``at_byte`` body bytes
    TRUNCATE = "truncate"  # graceful close after ``at_byte`` of a longer Content-Length
    STATUS = "status"  # answer ``status`` (500/503/429) with optional Retry-After
    STALL = "stall"  # stop sending for ``seconds`` after ``at_byte``
    IGNORE_RANGE = "ignore_range"  # 200 with the whole body, same ETag
    WRONG_RANGE = "wrong_range"  # 206 with the bytes (and Content-Range) of another range
    CHANGE = "change"  # the file changes (new bytes, new ETag) before this response


@dataclass
class Fault:
    """A fault rule. It hits the ``after``-th and later matching GETs with ``probability``,
    at most ``times`` times (-1: no limit)."""

    kind: FaultKind
    times: int = 1
    after: int = 0
    probability: float = 1.0
    at_byte: int = 0
    status: int = 503
    retry_after: float | None = None
    seconds: float = 5.0
    path: str | None = None  # only this file's name
    ranged_only: bool = False  # only requests with a Range header
    seen: int = 0  # matching requests so far


@dataclass
class SlowEdges:
    """Some connections capped far below the rest, as CDN edges cap some connections: every
    ``every``-th TCP connection (the ``every``-th, the ``2 * every``-th, …) sends at most
    ``rate`` bytes per second for as long as it lives."""

    every: int
    rate: int
    _seen: int = 0
    _slow: dict[tuple[str, int], bool] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.every < 1 or self.rate < 1:
            raise ValueError(f"slow edges need every >= 1 and rate >= 1, not {self}")

    def rate_of(self, peer: tuple[str, int]) -> int | None:
        """The cap of the connection from ``peer`` (counted on first sight), or None."""
        if peer not in self._slow:
            self._seen += 1
            self._slow[peer] = self._seen % self.every == 0
        return self.rate if self._slow[peer] else None

    @property
    def capped(self) -> set[int]:
        """The client ports of the connections that were slow."""
        return {port for (_, port), capped in self._slow.items() if capped}


def parse_range(value: str | None, size: int) -> tuple[int, int] | str | None:
    """One ``bytes=`` range → (start, end exclusive), "unsatisfiable", or None (ignore it)."""
    if not value or not value.startswith("bytes=") or "," in value:
        return None
    first, _, last = value[6:].strip().partition("-")
    try:
        if first == "":
            length = int(last)
            start, end = max(0, size - length), size
        else:
            start = int(first)
            end = min(size, int(last) + 1) if last else size
    except ValueError:
        return None
    if start >= size or start >= end:
        return "unsatisfiable"
    return start, end


def if_range_holds(value: str | None, etag: str, mtime: float) -> bool:
    """Whether an ``If-Range`` validator still names the stored version (strong ETag, or a
    date to the second)."""
    if value is None:
        return True
    if value.startswith('"') or value.startswith("W/"):
        return value == etag  # strong comparison: a weak tag never matches
    try:
        when = parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError):
        return False
    return int(when) == int(mtime)
