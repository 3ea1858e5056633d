"""The live bandwidth limit in a process that runs downloads: the ledger says what it is
(any process may change it: ``modelhaul limit``, the server, ``set_limit``); this sets the
process's token buckets to it each time the scheduler's watch looks (every
``settings.watch_seconds``).

How the limits combine (the strictest applies):

- all bytes of this process: the ledger's global limit now (its fixed rate, or the rule of
  its schedule for the local time) and the process's own ``--limit-rate`` /
  ``MODELHAUL_RATE_LIMIT``, whichever is lower;
- each task, inside that: its own limit (its ``rate_limit`` option: ``get --limit-rate``,
  ``modelhaul limit --task``), in a lane of its own so that tasks take turns at the global
  bucket (``engine.ratelimit``).

The global limit and ``max_per_host`` are the fleet's: with other processes running tasks on
the same ledger this process takes its share of them (``manager.shares``); the process's own
``--limit-rate`` and each task's own limit are not shared.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from downloader.engine.ratelimit import TokenBucket
from downloader.limits import (
    GlobalLimit,
    Limits,
    Schedule,
    check_rate,
    parse_rate,
    parse_schedule,
    strictest,
)
from downloader.manager.shares import ALONE, FleetShare
from storage import FINAL_STATES, Ledger, LimitRecord, TaskState

Clock = Callable[[], datetime]  # the local time now (tests move it)


def local_now() -> datetime:
    """The local time now (a schedule's times are local)."""
    return datetime.now()


CLOCK_OFFSET = "MODELHAUL_CLOCK_OFFSET"  # a testing hook: seconds added to the local time
_MAX_OFFSET = 10 * 366 * 86400.0


def local_clock(env: Mapping[str, str] = os.environ) -> Clock:
    """The clock a manager reads a schedule by: the local time, moved by
    ``MODELHAUL_CLOCK_OFFSET`` seconds where that is set. It is for tests (a process in
    another process's test sees a schedule's boundary come when they choose) and moves
    nothing else: not logs, leases or timestamps in the ledger. ValueError if it is not a
    number of seconds (within ten years)."""
    raw = env.get(CLOCK_OFFSET, "").strip()
    if not raw:
        return local_now
    try:
        seconds = float(raw)
    except ValueError:
        seconds = math.nan
    if not math.isfinite(seconds) or abs(seconds) > _MAX_OFFSET:
        raise ValueError(f"{CLOCK_OFFSET}: {raw[:40]!r} is not a number of seconds (testing)")
    offset = timedelta(seconds=seconds)
    return lambda: datetime.now() + offset


def global_limit(record: LimitRecord) -> GlobalLimit:
    """The global limit a ledger row holds (a schedule that no longer reads is ignored,
    as none: it was checked when written)."""
    schedule = None
    if record.schedule is not None:
        try:
            schedule = Schedule.from_json(record.schedule)
        except ValueError:
            schedule = None
    return GlobalLimit(record.rate, schedule)


@dataclass(frozen=True)
class Fleet:
    """What a process needs to take its share of the fleet's limits: its lease ``owner``
    (its own tasks are not the others'), when another's lease counts as gone, and the
    per-host connection cap of its HTTP session with the fleet's ``max_per_host``."""

    owner: str
    stale_after: float
    max_per_host: int
    set_per_host: Callable[[int], None]


class LiveLimits:
    """The global bucket of one process and a lane per task it runs, kept at the ledger's
    limits (with ``fleet``: this process's share of them)."""

    def __init__(
        self,
        ledger: Ledger,
        bucket: TokenBucket,
        own_rate: int | None,
        clock: Clock,
        fleet: Fleet | None = None,
    ) -> None:
        self._ledger = ledger
        self.bucket = bucket
        self.own_rate = own_rate  # the process's own limit (--limit-rate), never exceeded
        self.clock = clock
        self._fleet = fleet
        self._lanes: dict[int, TokenBucket] = {}
        self.share = ALONE  # as of the last refresh

    def lane(self, task_id: int, rate: int | None) -> TokenBucket:
        """A new lane for a run of ``task_id`` (its own limit ``rate``) inside the global
        bucket."""
        lane = TokenBucket(rate, within=self.bucket)
        self._lanes[task_id] = lane
        return lane

    def drop(self, task_id: int, lane: TokenBucket | None = None) -> None:
        """Forget the lane of a run that ended (only that one: a new run may have its own)."""
        if lane is None or self._lanes.get(task_id) is lane:
            self._lanes.pop(task_id, None)

    async def refresh(self, task_ids: Iterable[int] = ()) -> None:
        """Read the limits from the ledger and set the buckets to them; ``task_ids``: the
        tasks this process runs (or is starting) now."""
        mine = set(task_ids)
        ids = [i for i in mine if i in self._lanes]
        snapshot = await self._ledger.limits.snapshot(ids)
        share = await self._share(len(mine))
        self.apply(global_limit(snapshot.global_limit), snapshot.task_rates, ids, share)

    async def _share(self, mine: int) -> FleetShare:
        fleet = self._fleet
        if fleet is None:
            return ALONE
        others = await self._ledger.workers.running_elsewhere(fleet.owner, fleet.stale_after)
        return FleetShare(mine, mine + others)

    def apply(
        self,
        limit: GlobalLimit,
        task_rates: dict[int, int],
        ids: Iterable[int],
        share: FleetShare = ALONE,
    ) -> None:
        """Set the global bucket to this process's ``share`` of ``limit`` now (the
        strictest with its own), the lanes of ``ids`` to their own rates, and the
        connections toward each host to its share of the fleet's ``max_per_host``."""
        self.share = share
        fleet_rate = share.rate(limit.rate_at(self.clock()))
        self.bucket.set_rate(strictest(fleet_rate, self.own_rate))
        if self._fleet is not None:
            self._fleet.set_per_host(share.connections(self._fleet.max_per_host))
        for task_id in ids:
            lane = self._lanes.get(task_id)
            if lane is not None:
                lane.set_rate(task_rates.get(task_id))

    # --- what frontends call (through the manager) ------------------------------------------

    async def set_limit(self, rate: int | str | None, task_id: int | None = None) -> Limits:
        """Set the global limit (clearing a schedule), or ``task_id``'s own; None: none.
        Taken up by every process running downloads within ``settings.watch_seconds``,
        by this one at once."""
        checked = _rate(rate)
        if task_id is None:
            await self._ledger.limits.set_global(checked)
        else:
            await self._ledger.limits.set_task(task_id, checked)
        await self.refresh(list(self._lanes))
        return await self.view()

    async def set_schedule(self, schedule: str | Schedule | None) -> Limits:
        """Make the global limit follow ``schedule`` (``"08:00-18:00=2M,18:00-08:00=off"``,
        local time); None: no schedule (and no limit)."""
        if isinstance(schedule, str):
            schedule = parse_schedule(schedule)
        stored = schedule.to_json() if schedule is not None else None
        await self._ledger.limits.set_global(None, stored)
        await self.refresh(list(self._lanes))
        return await self.view()

    async def view(self) -> Limits:
        """The limits as they stand (the rule in force by this process's clock)."""
        limit = global_limit(await self._ledger.limits.get())
        now = self.clock()
        return Limits(
            rate=limit.rate if limit.schedule is None else None,
            schedule=limit.schedule,
            now=limit.rate_at(now),
            rule=limit.schedule.rule_at(now) if limit.schedule else None,
            process_rate=self.own_rate,
            tasks=await self._ledger.limits.task_rates(frozenset(TaskState) - FINAL_STATES),
        )


def _rate(rate: int | str | None) -> int | None:
    """A rate as given to ``set_limit`` checked (``ValueError`` naming what was wrong)."""
    if rate is None or isinstance(rate, str):
        return parse_rate(rate) if rate is not None else None
    return check_rate(rate)
