"""The live bandwidth limit as values: a rate (``"8M"``, ``"off"``), a schedule of rates by
the local clock (``"08:00-18:00=2M,18:00-08:00=off"``), and which rule holds at a time.

Plain Python (the command line parses with it before loading anything heavy). The ledger
keeps these (``storage.limits``); each process that runs downloads reads them every
``settings.watch_seconds`` and sets its token buckets (``downloader.manager.limits``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from downloader.settings import parse_size

MIN_RATE = 1024  # below 1 KiB/s one read of 64 KiB waits over a minute
MAX_RATE = 1 << 50  # a petabyte per second: more is a typo, not a limit
OFF_WORDS = ("off", "none", "unlimited")
MAX_RATE_TEXT = 40
MAX_RULES = 48  # a rule per half hour is already more than anyone keeps track of
MAX_SCHEDULE_TEXT = 2000
DAY = 24 * 60  # minutes
_TIME = re.compile(r"([0-9]{1,2}):([0-9]{2})")


def parse_rate(text: str) -> int | None:
    """``"8M"`` → bytes per second; ``"off"`` (or ``none``, ``unlimited``) → None (no
    limit). ValueError naming what was wrong (not a size, under 1K, absurdly large)."""
    if not isinstance(text, str):
        raise ValueError(f"a rate is text such as 8M or off, not {type(text).__name__}")
    if len(text) > MAX_RATE_TEXT:  # and no message echoes a megabyte of it back
        raise ValueError(f"{text[:20]!r}... is not a rate: at most {MAX_RATE_TEXT} characters")
    if text.strip().lower() in OFF_WORDS:
        return None
    rate = parse_size(text)
    return check_rate(rate, text)


def check_rate(rate: int, shown: object = None) -> int:
    """``rate`` if it is a usable limit in bytes per second (ValueError if not)."""
    what = repr(shown if shown is not None else rate)[:40]
    if isinstance(rate, bool) or not isinstance(rate, int):
        raise ValueError(f"{what} is not a rate (use e.g. 800K, 10MB, 10MiB or off)")
    if rate < MIN_RATE:
        raise ValueError(f"{what} is too slow to download at: a rate must be at least 1K")
    if rate > MAX_RATE:
        raise ValueError(f"{what} is more than any limit could mean (at most 1P per second)")
    return rate


def format_rate(rate: int | None) -> str:
    """``2097152`` → ``"2M"`` (binary, as the rate is typed); None → ``"off"``."""
    if rate is None:
        return "off"
    for unit, power in (("T", 4), ("G", 3), ("M", 2), ("K", 1)):
        if rate % (1024**power) == 0:
            return f"{rate // 1024**power}{unit}"
    return str(rate)


@dataclass(frozen=True)
class Rule:
    """From ``start`` up to ``end`` (minutes after local midnight; ``end`` may be smaller:
    the rule wraps midnight) the limit is ``rate`` (None: none)."""

    start: int
    end: int
    rate: int | None

    def covers(self, minute: int) -> bool:
        """Whether the rule holds at ``minute`` after midnight."""
        if self.start < self.end:
            return self.start <= minute < self.end
        return minute >= self.start or minute < self.end

    def minutes(self) -> set[int]:
        """Every minute of the day the rule covers."""
        return {m for m in range(DAY) if self.covers(m)}

    def __str__(self) -> str:
        return f"{_hhmm(self.start)}-{_hhmm(self.end)}={format_rate(self.rate)}"


@dataclass(frozen=True)
class Schedule:
    """Rules that cover the whole day exactly once."""

    rules: tuple[Rule, ...]

    def rule_at(self, when: datetime) -> Rule:
        """The rule in force at the local time ``when``."""
        minute = when.hour * 60 + when.minute
        for rule in self.rules:
            if rule.covers(minute):
                return rule
        raise AssertionError("a checked schedule covers every minute")

    def to_json(self) -> list[list[int | None]]:
        """``[[start, end, rate], …]`` (minutes, bytes per second): how the ledger keeps it."""
        return [[r.start, r.end, r.rate] for r in self.rules]

    @classmethod
    def from_json(cls, value: object) -> Schedule:
        """The inverse of ``to_json`` (ValueError if ``value`` is not one)."""
        if not isinstance(value, list) or not all(
            isinstance(item, list) and len(item) == 3 for item in value
        ):
            raise ValueError("a stored schedule must be a list of [start, end, rate]")
        rules = []
        for start, end, rate in value:
            if not (isinstance(start, int) and isinstance(end, int)) or not (
                0 <= start < DAY and 0 <= end <= DAY
            ):
                raise ValueError("a stored schedule's times must be minutes of the day")
            rules.append(Rule(start, end, None if rate is None else check_rate(rate)))
        return _checked(rules)

    def __str__(self) -> str:
        return ",".join(str(r) for r in self.rules)


def parse_schedule(text: str) -> Schedule:
    """``"08:00-18:00=2M,18:00-08:00=off"`` → a ``Schedule``. Times are local, ``HH:MM``
    (24:00 is midnight too); a rule whose end comes before its start wraps midnight. The
    rules must cover the whole day without overlapping (ValueError naming the clash)."""
    if not isinstance(text, str):
        raise ValueError("a schedule is text such as 08:00-18:00=2M,18:00-08:00=off")
    if len(text) > MAX_SCHEDULE_TEXT:
        raise ValueError(f"a schedule is at most {MAX_SCHEDULE_TEXT} characters")
    parts = [p.strip() for p in text.split(",")]
    if not text.strip() or not all(parts):
        raise ValueError(f"empty rule in schedule {text!r:.80} (use e.g. 08:00-18:00=2M)")
    if len(parts) > MAX_RULES:
        raise ValueError(f"a schedule has at most {MAX_RULES} rules")
    rules = []
    for part in parts:
        span, eq, rate = part.partition("=")
        start, dash, end = span.partition("-")
        if not eq or not dash:
            raise ValueError(f"{part!r:.60} is not a rule like 08:00-18:00=2M")
        # 24:00 ends a day ("00:00-24:00=1M": all of it) and starts the next one.
        rules.append(Rule(_minute(start) % DAY, _minute(end), parse_rate(rate)))
    return _checked(rules)


def _checked(rules: list[Rule]) -> Schedule:
    seen: dict[int, Rule] = {}
    for rule in rules:
        if rule.start == rule.end:
            raise ValueError(f"rule {rule} covers no time (or all of it): give two times")
        for minute in sorted(rule.minutes()):
            if minute in seen:
                raise ValueError(f"rules {seen[minute]} and {rule} overlap at {_hhmm(minute)}")
            seen[minute] = rule
    if len(seen) < DAY:
        # Name the gap as the user would: from where a rule ends to where the next begins.
        start = next(m for m in range(DAY) if m not in seen and (m - 1) % DAY in seen)
        end = next((start + k) % DAY for k in range(DAY) if (start + k) % DAY in seen)
        raise ValueError(
            f"the schedule has no rule from {_hhmm(start)} to {_hhmm(end)}: cover all 24 hours"
        )
    return Schedule(tuple(rules))


def _minute(text: str) -> int:
    match = _TIME.fullmatch(text.strip())
    hours, minutes = (int(match[1]), int(match[2])) if match else (-1, -1)
    if not (0 <= hours <= 24 and 0 <= minutes < 60) or (hours == 24 and minutes):
        raise ValueError(f"{text.strip()!r:.20} is not a time of day like 08:00")
    return hours * 60 + minutes


def _hhmm(minute: int) -> str:
    return f"{minute // 60:02d}:{minute % 60:02d}"


@dataclass(frozen=True)
class GlobalLimit:
    """The global limit as the ledger keeps it: a fixed ``rate`` or a ``schedule`` (setting
    one clears the other)."""

    rate: int | None = None
    schedule: Schedule | None = None

    def rate_at(self, when: datetime) -> int | None:
        """The limit at the local time ``when`` (None: none)."""
        return self.schedule.rule_at(when).rate if self.schedule else self.rate


def strictest(*rates: int | None) -> int | None:
    """The smallest of the limits given (None: no limit at all)."""
    given = [r for r in rates if r is not None]
    return min(given) if given else None


@dataclass(frozen=True)
class Limits:
    """The limits as a frontend shows them: the global one as set, what holds now (and by
    which rule of the schedule), this process's own limit, and tasks' own limits."""

    rate: int | None  # the fixed global limit (None: none, or a schedule instead)
    schedule: Schedule | None
    now: int | None  # the global limit in force at the time asked
    rule: Rule | None  # the schedule's rule in force then (None: no schedule)
    process_rate: int | None  # the asking process's own limit (--limit-rate)
    tasks: dict[int, int]  # task id -> its own limit, for tasks not finished

    def to_dict(self) -> dict[str, object]:
        """The JSON shape (``modelhaul limit --json``, ``GET /api/v1/limits``): rates in
        bytes per second, null for none, each with its text (``"8M"``) beside it."""
        return {
            "rate": self.rate,
            "rate_text": format_rate(self.rate),
            "schedule": str(self.schedule) if self.schedule else None,
            "now": {
                "rate": self.now,
                "rate_text": format_rate(self.now),
                "rule": str(self.rule) if self.rule else None,
            },
            "process_rate": self.process_rate,
            "tasks": [
                {"id": task_id, "rate": rate, "rate_text": format_rate(rate)}
                for task_id, rate in sorted(self.tasks.items())
            ],
        }
