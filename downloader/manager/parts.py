"""What an open ``DownloadManager`` is made of, wired together once."""

from __future__ import annotations

import asyncio
import functools
import logging

from downloader.engine.http import set_per_host_limit
from downloader.manager.bus import ProgressBus
from downloader.manager.intake import Intake
from downloader.manager.leases import Leases
from downloader.manager.limits import Clock, Fleet, LiveLimits
from downloader.manager.observer import Observer
from downloader.manager.presence import Presence
from downloader.manager.runner import RunContext
from downloader.manager.scheduler import Scheduler
from storage import Ledger, LedgerUnavailableError

log = logging.getLogger(__name__)

CLOSE_GRACE = 5.0  # seconds runners get to record where they are after a second cancel


class Parts:
    """What an open manager is made of."""

    def __init__(self, ledger: Ledger, ctx: RunContext, bus: ProgressBus, clock: Clock) -> None:
        self.ledger = ledger
        self.ctx = ctx
        self.scheduler: Scheduler
        # The leases wake the scheduler when a task goes back to the queue.
        self.leases = Leases(
            ledger,
            stale_after=ctx.settings.stale_after,
            on_requeue=lambda: self.scheduler.wake.set(),
        )
        stale_after = ctx.settings.stale_after
        fleet = Fleet(
            owner=self.leases.owner,
            stale_after=stale_after,
            max_per_host=ctx.engine.config.max_per_host,
            set_per_host=functools.partial(set_per_host_limit, ctx.session),
        )
        self.limits = LiveLimits(ledger, ctx.engine.limiter, ctx.settings.rate_limit, clock, fleet)
        presence = Presence(ledger, self.leases.lease, stale_after=stale_after)
        self.scheduler = Scheduler(ctx, self.leases, bus, self.limits, presence)
        self.intake = Intake(ledger, ctx.settings, self.leases, self.scheduler.running)
        self.observer = Observer(ledger, bus, self.scheduler.snapshot)

    async def close(self) -> None:
        """Stop running tasks (back to the queue, to go on from their chunks), then release
        the session and the ledger."""
        self.observer.close()
        closing = asyncio.ensure_future(self.scheduler.close())
        try:
            await asyncio.shield(closing)
        except asyncio.CancelledError:
            # Cancelled again as it closes (a second Ctrl-C): the runners still get a moment
            # to record where they are before the ledger closes under them.
            await asyncio.wait({closing}, timeout=CLOSE_GRACE)
            await self._release()
            raise
        try:
            # A claim made as the scheduler was being cancelled has no runner: queue it
            # again now rather than leave it leased to a manager that is gone.
            await self.leases.requeue_mine("claimed as its manager closed")
        except LedgerUnavailableError as e:
            # Nothing more can be recorded; our leases lapse with this process.
            log.info("closing without requeueing: %s", e)
        finally:
            await self._release()

    async def _release(self) -> None:
        await self.ctx.session.close()
        await self.ledger.close()
