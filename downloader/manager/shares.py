"""How a fleet of processes on one ledger shares its limits: the global rate limit (issue 13,
``modelhaul limit``) and ``max_per_host`` hold for the fleet as a whole, not per process.

Each process takes the part of them its running tasks are of all the tasks that live
processes run (counted from the ledger's leases, re-read on every limit refresh, every
``settings.watch_seconds``): a process running 1 task of 4 takes a quarter of the rate and
a quarter of the connections toward each host. A process alone gets the whole limit, as it
did before there was a fleet. The shares follow the work, not the head count, so a worker
with nothing to do holds nothing back from the others.

It is deliberately simple: shares are recomputed, not negotiated, so for a watch interval
after a claim elsewhere the fleet may run above its limit by that one task's share, and a
process whose tasks are slower than their share (a slow origin) leaves the difference
unused rather than handing it on.
"""

from __future__ import annotations

from dataclasses import dataclass

# A share never falls below this part of the limit (nor 1 KiB/s, modelhaul's smallest
# rate): a count read just before a burst of claims elsewhere must slow a process down, not
# stall it.
FLOOR = 1 / 50
MIN_RATE = 1024


@dataclass(frozen=True, slots=True)
class FleetShare:
    """``mine`` of the ``total`` tasks the fleet's live processes run (``total`` counts
    ``mine``). A process about to start its first task counts it already."""

    mine: int = 0
    total: int = 0

    @property
    def fraction(self) -> float:
        """This process's part of the fleet's limits, in (0, 1]."""
        if self.mine <= 0:  # its next task joins the others'
            return 1 / (max(0, self.total) + 1)
        return self.mine / max(self.mine, self.total)

    def rate(self, limit: int | None) -> int | None:
        """This process's part of the fleet's rate ``limit`` (None: no limit)."""
        if limit is None:
            return None
        floor = min(limit, max(MIN_RATE, int(limit * FLOOR)))
        return max(floor, int(limit * self.fraction))

    def connections(self, max_per_host: int) -> int:
        """This process's part of the fleet's connections toward one host: rounded down so
        the fleet stays within ``max_per_host``, but never none."""
        return max(1, int(max_per_host * self.fraction))


ALONE = FleetShare(1, 1)  # a process with no fleet around it: the whole limit
