"""What an open ``DownloadManager`` is made of, wired together once."""

from __future__ import annotations

from downloader.manager.bus import ProgressBus
from downloader.manager.intake import Intake
from downloader.manager.leases import Leases
from downloader.manager.limits import Clock, LiveLimits
from downloader.manager.observer import Observer
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
        self.limits = LiveLimits(ledger, ctx.engine.limiter, ctx.settings.rate_limit, clock)
        self.scheduler = Scheduler(ctx, self.leases, bus, self.limits)
        self.intake = Intake(ledger, ctx.settings, self.leases, self.scheduler.running)
        self.observer = Observer(ledger, bus, self.scheduler.snapshot)
