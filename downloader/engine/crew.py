"""The connections of one file while its ranges are fetched: start them, watch their rates,
move a slow one's range to a fresh connection, and keep as many as raise the total.

A connection is slow when it runs under ``slow_fraction`` of the median rate of the file's
streaming connections for ``slow_seconds``, or under a quarter of that fraction for a
quarter of that time (a CDN edge that caps some connections far below the rest). Its
span is split at the next block boundary past what it has received: a fresh connection
gets the rest. What it keeps (at most a block and what it buffered) is asked for again on a
second fresh connection, into a shadow span outside the plan; whichever of the two finishes
first stands, and the other is dropped (its connection closes with its unfinished body).
Two fetches never write into one span's digests, and both write the same bytes of the same
version (``If-Range``), so the ledger's chunks stay what is on disk and verified.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, replace
from typing import Any

from downloader.engine.config import EngineConfig
from downloader.engine.fetch import Lane, RangeJob, fetch_anywhere, work
from downloader.engine.pace import Climb, Meter, slow
from downloader.engine.plan import Plan, Span

log = logging.getLogger(__name__)

ADAPT_SECONDS = 2.0  # how long each connection count is measured before the next step
EARLY = 0.25  # a connection far behind is judged after this part of slow_seconds


@dataclass(eq=False)
class _Race:
    """A slow connection's span and its shadow, fetched again on a fresh connection."""

    span: Span
    slow: asyncio.Task[None]
    shadow: Span
    racer: asyncio.Task[None]


@dataclass
class CrewStats:
    """What the crew did, for logs and tests."""

    handed_over: int = 0  # slow connections whose range moved
    races_won: int = 0  # shadows that finished first
    most: int = 0  # the most connections at once


class Crew:
    """Runs the lanes (connections) of one file until its plan is finished."""

    def __init__(
        self,
        job: RangeJob,
        plan: Plan,
        config: EngineConfig,
        count: int,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._job = job
        self._plan = plan
        self._config = config
        self._clock = clock
        self._tick = min(0.5, config.slow_seconds / 4)
        high = config.max_per_host if config.adaptive_connections else count
        # A file too small for the configured count has all the connections it can use.
        if count < config.connections:
            high = count
        self._climb = Climb(low=1, high=max(count, high), target=count)
        self._tasks: dict[asyncio.Task[None], Lane] = {}
        self._meters: dict[int, Meter] = {}
        self._seen: dict[int, int] = {}
        self._races: dict[asyncio.Task[None], _Race] = {}
        self._racers: set[int] = set()
        self._handed: set[int] = set()  # lanes whose range has moved already
        self._ids = 0
        self._window = (0.0, 0, True)  # seconds, bytes, busy throughout
        self.stats = CrewStats()

    async def run(self, guard: asyncio.Task[None]) -> None:
        """Fetch until every lane is done. The first failure, of a lane or of ``guard``
        (the checkpointer, which runs as long as they do), stops the rest and is raised."""
        for _ in range(self._climb.target):
            self._start(lambda lane: work(self._job, self._plan, lane))
        last = self._clock()
        try:
            while self._tasks:
                done, _ = await asyncio.wait(
                    set(self._tasks) | {guard},
                    timeout=self._tick,
                    return_when=asyncio.FIRST_COMPLETED,
                )
                for task in done:
                    if not task.cancelled() and task.exception() is not None:
                        raise task.exception()  # type: ignore[misc]
                    if task in self._tasks:
                        self._tasks.pop(task)
                        await self._settle(task)
                now = self._clock()
                if now - last >= self._tick:
                    await self._watch(now - last)
                    last = now
                self._top_up()
        finally:
            for task in self._tasks:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)

    # --- lanes --------------------------------------------------------------------------------

    def _start(self, body: Callable[[Lane], Coroutine[Any, Any, None]]) -> Lane:
        lane = Lane(self._ids)
        self._ids += 1
        self._meters[lane.id] = Meter(self._config.slow_seconds)
        self._seen[lane.id] = 0
        self._tasks[asyncio.create_task(body(lane), name=f"lane {lane.id}")] = lane
        self.stats.most = max(self.stats.most, len(self._tasks))
        return lane

    def _regular(self) -> list[Lane]:
        """Lanes that take spans from the plan and are not on their way out."""
        return [
            lane
            for lane in self._tasks.values()
            if not lane.retiring and lane.id not in self._racers
        ]

    def _top_up(self) -> None:
        """As many lanes as the target, while the plan has work for them."""
        while len(self._regular()) < self._climb.target and self._plan.has_work():
            self._start(lambda lane: work(self._job, self._plan, lane))

    # --- slow connections ---------------------------------------------------------------------

    async def _watch(self, seconds: float) -> None:
        rates: dict[Lane, float] = {}
        total = 0
        # Under a bandwidth limit the connections go as fast as the bucket lets them: one
        # held back is held back by us, not by its edge, and more would not raise the total.
        limited = self._job.limiter.limited
        for lane in self._tasks.values():
            got = lane.received - self._seen[lane.id]
            self._seen[lane.id] = lane.received
            total += got
            if limited:
                self._meters[lane.id] = Meter(self._config.slow_seconds)
                continue
            meter = self._meters[lane.id]
            if lane.streaming:
                meter.add(seconds, got)
                if meter.seconds >= self._config.slow_seconds * EARLY:
                    rates[lane] = meter.rate
        # Under the fraction for a whole window, or far under it (a sixteenth of the median
        # at the defaults, as a capped CDN edge is) after a quarter of one: the further
        # behind, the less time it is given to hold the tail.
        far = set(slow(rates, self._config.slow_fraction / 4))
        judged = {lane for lane in rates if self._meters[lane.id].full or lane in far}
        for lane in slow(rates, self._config.slow_fraction):
            if lane not in judged:
                continue
            if lane.id in self._racers:
                await self._rerace(lane)
            # A retiring lane too: it would otherwise hold its span to the end at its pace.
            elif lane.id not in self._handed and lane.span is not None:
                self._hand_over(lane, rates)
        if not limited:
            self._adapt(seconds, total)

    def _hand_over(self, lane: Lane, rates: dict[Lane, float]) -> None:
        span = lane.span
        assert span is not None
        slow_task = next(t for t, other in self._tasks.items() if other is lane)
        lane.retiring = True
        self._handed.add(lane.id)
        self.stats.handed_over += 1
        log.info(
            "connection %d runs at %.0f B/s against a median of %.0f: moving bytes %d-%d",
            lane.id,
            rates[lane],
            sorted(rates.values())[len(rates) // 2],
            span.pos,
            span.end,
        )
        new_id = self._ids
        rest = self._plan.split(span, span.pos, new_id)
        if rest is not None:
            self._start(lambda fresh: work(self._job, self._plan, fresh, first=rest))
        if not span.finished:
            self._race(span, slow_task)

    def _race(self, span: Span, slow_task: asyncio.Task[None]) -> None:
        """Ask for ``span``'s unfinished tail again on a fresh connection."""
        shadow = self._plan.shadow(span)
        quiet = replace(self._job, on_written=lambda n: None)  # counted once, when adopted
        racer = self._start(lambda fresh: fetch_anywhere(quiet, shadow, fresh))
        # A racer is judged sooner: it has little to fetch, and a slow one helps nobody.
        self._meters[racer.id] = Meter(2 * self._tick)
        self._racers.add(racer.id)
        racer_task = next(t for t, other in self._tasks.items() if other is racer)
        race = _Race(span, slow_task, shadow, racer_task)
        self._races[slow_task] = race
        self._races[racer_task] = race

    async def _rerace(self, racer: Lane) -> None:
        """The fresh connection is slow too: drop it and try another."""
        task = next(t for t, other in self._tasks.items() if other is racer)
        race = self._races.pop(task)
        self._races.pop(race.slow, None)
        self._racers.discard(racer.id)
        await self._drop(task)
        if race.slow in self._tasks and not race.span.finished:
            self._race(race.span, race.slow)

    async def _settle(self, task: asyncio.Task[None]) -> None:
        """A lane ended: if it was in a race, drop the other one."""
        race = self._races.pop(task, None)
        if race is None:
            return
        other = race.slow if task is race.racer else race.racer
        self._races.pop(other, None)
        if task is race.racer and not race.span.finished:
            # Keep the span from being handed out while the slow fetch winds down.
            race.span.owner = -1
            self.stats.races_won += 1
        await self._drop(other)
        if task is race.racer and not race.span.finished:
            self._job.on_written(self._plan.adopt(race.span, race.shadow))
            self._plan.release(race.span)

    async def _drop(self, task: asyncio.Task[None]) -> None:
        if self._tasks.pop(task, None) is None:
            return
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        if not task.cancelled() and task.exception() is not None:
            raise task.exception()  # type: ignore[misc]

    # --- how many connections -----------------------------------------------------------------

    def _adapt(self, seconds: float, nbytes: int) -> None:
        regular = self._regular()
        busy = (
            len(regular) >= self._climb.target
            and all(lane.span is not None for lane in regular)
            and self._plan.has_work()
        )
        spent, got, was_busy = self._window
        spent, got, busy = spent + seconds, got + nbytes, was_busy and busy
        if spent < ADAPT_SECONDS:
            self._window = (spent, got, busy)
            return
        self._window = (0.0, 0, True)
        target = self._climb.observe(got / spent, busy)
        # The slowest leave first: whatever the count, the connections kept are the best.
        by_rate = sorted(regular, key=lambda lane: self._meters[lane.id].rate)
        for lane in by_rate[: max(0, len(regular) - target)]:
            lane.retiring = True
