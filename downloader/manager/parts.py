"""What an open ``DownloadManager`` is made of, wired together once."""

from __future__ import annotations

import functools

from downloader.engine.http import set_per_host_limit
from downloader.manager.bus import ProgressBus
from downloader.manager.intake import Intake
from downloader.manager.leases import Leases
from downloader.manager.limits import Clock, Fleet, LiveLimits
from downloader.manager.observer import Observer
from downloader.manager.presence import Presence
from downloader.manager.runner import RunContext
from downloader.manager.scheduler import Scheduler
from storage import Ledger


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
