"""A task's download through its ledger's database server restarting: the run waits a
moment and goes on from the recorded chunks, a few times, before the error stands. A task
that only had to go on is then not recorded failed the moment the database answers again
(a checkpoint cut by the restart, then a failure written once it is back)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from storage import LedgerUnavailableError

# 15 s in all: a restart takes seconds, and the wait stays well inside the half minute after
# which other hosts may take over the task's lease. A longer outage ends the run as any
# other error does (recorded failed if the ledger takes that write, else its lease lapses).
WAITS = (1.0, 2.0, 4.0, 8.0)


async def through_outages(
    step: Callable[[], Awaitable[None]],
    on_outage: Callable[[LedgerUnavailableError, float], None],
    on_back: Callable[[LedgerUnavailableError], Awaitable[None]],
    waits: tuple[float, ...] = WAITS,
) -> None:
    """Run ``step``; when the ledger's database server goes away under it, tell
    ``on_outage`` (the error, the wait), wait, let ``on_back`` check the run may go on (it
    raises if not) and run it again. A ledger that fails otherwise (a full disk: waiting
    would not help) and an outage past the last wait propagate. An attempt that ran longer
    than all the waits together met a new outage, not the same one: the waits start over,
    so a long download rides out a restart every few hours."""
    left = list(waits)
    while True:
        started = time.monotonic()
        try:
            await step()
            return
        except LedgerUnavailableError as e:
            if not e.outage:
                raise
            if time.monotonic() - started > sum(waits):
                left = list(waits)
            if not left:
                raise
            wait = left.pop(0)
            on_outage(e, wait)
            await asyncio.sleep(wait)
            await on_back(e)
