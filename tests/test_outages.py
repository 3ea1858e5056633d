"""A run through its ledger's database server going away (downloader/manager/outages.py):
an outage is waited out a few times; a local ledger's failure (a SQLite file on a full disk,
as the ledger raises it) or an outage past the last wait ends it at once. That a server's
going away is an outage is tested on a real PostgreSQL in test_ledger_postgres.py, and a
worker waiting one out in test_fleet.py."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from downloader.manager.outages import through_outages
from storage import LedgerUnavailableError, NewTask, open_ledger

AWAY = LedgerUnavailableError(
    "postgresql://h/db", True, "the database server is unreachable", outage=True
)


class Steps:
    """A step that fails with ``errors`` in turn, then succeeds; what the run was told."""

    def __init__(self, *errors: Exception) -> None:
        self.errors = list(errors)
        self.runs = 0
        self.told: list[str] = []

    async def step(self) -> None:
        self.runs += 1
        if self.errors:
            raise self.errors.pop(0)

    def on_outage(self, error: LedgerUnavailableError, wait: float) -> None:
        self.told.append(f"away {wait}")

    async def on_back(self, error: LedgerUnavailableError) -> None:
        self.told.append("back")


async def test_an_outage_is_waited_out_and_the_step_run_again() -> None:
    steps = Steps(AWAY, AWAY)
    await through_outages(steps.step, steps.on_outage, steps.on_back, waits=(0.01, 0.02, 0.03))
    assert steps.runs == 3
    assert steps.told == ["away 0.01", "back", "away 0.02", "back"]


async def test_an_outage_past_the_last_wait_stands() -> None:
    steps = Steps(AWAY, AWAY, AWAY)
    with pytest.raises(LedgerUnavailableError) as raised:
        await through_outages(steps.step, steps.on_outage, steps.on_back, waits=(0.01, 0.01))
    assert raised.value is AWAY and steps.runs == 3


async def test_an_attempt_longer_than_all_the_waits_met_a_new_outage() -> None:
    class Slow(Steps):
        async def step(self) -> None:
            await asyncio.sleep(0.05)  # longer than the waits together: a new outage each
            await super().step()

    steps = Slow(AWAY, AWAY, AWAY, AWAY)
    await through_outages(steps.step, steps.on_outage, steps.on_back, waits=(0.01, 0.01))
    assert steps.runs == 5  # without starting over, the third outage would have stood


async def test_a_run_that_may_not_go_on_stops_with_what_on_back_raised() -> None:
    class Taken(Steps):
        async def on_back(self, error: LedgerUnavailableError) -> None:
            raise LookupError("taken over meanwhile")

    steps = Taken(AWAY)
    with pytest.raises(LookupError, match="taken over"):
        await through_outages(steps.step, steps.on_outage, steps.on_back, waits=(0.01,))
    assert steps.runs == 1


async def test_a_local_ledgers_failure_is_not_waited_for(tmpfs) -> None:
    # A ledger whose disk is full: not an outage, so waiting would only delay the one error
    # the user must see.
    disk = tmpfs("4m")
    async with await open_ledger(disk / "ledger.db") as ledger:
        await ledger.tasks.enqueue([NewTask("url", "http://e/f", "/d")])
        with (disk / "filler").open("wb") as f, contextlib.suppress(OSError):
            f.write(b"\0" * (8 << 20))

        async def write() -> None:
            for i in range(200):  # past what the WAL's pages already hold
                await ledger.tasks.enqueue([NewTask("url", f"http://e/{i}", "/d" + "x" * 4000)])

        steps = Steps()
        with pytest.raises(LedgerUnavailableError, match="full") as raised:
            await through_outages(write, steps.on_outage, steps.on_back, waits=(0.01,))
    assert not raised.value.outage and steps.told == [] and "disk" in raised.value.problem
