"""Limits across a fleet: the global rate limit (``modelhaul limit``) and ``max_per_host``
hold for all the processes running tasks on one ledger together, each taking its share by
its running tasks. Two real ``modelhaul worker`` processes on one SQLite ledger; the origin
here measures what the clients take (``Origin.taken``), compared with ratio bounds as in
``test_live_limit.py``."""

from __future__ import annotations

import asyncio
import random
import time
from pathlib import Path

import pytest
from clikit import start
from test_live_limit import BUFFER, MiB, all_downloading, queue, rates_over, run, stop

from downloader.manager.shares import ALONE, FleetShare
from downloader.testing.origin import Origin

SIZE = 64 * MiB  # lasts the test at 4M/s for the fleet (~30 s)


@pytest.fixture(scope="module")
def payload() -> bytes:
    return random.Random(19).randbytes(SIZE)


async def test_two_workers_under_a_global_limit_receive_it_together_not_each(
    tmp_path: Path, payload: bytes
) -> None:
    home = tmp_path / "home"
    async with Origin({"a.bin": payload, "b.bin": payload}, send_buffer=BUFFER) as origin:
        assert (await run(home, "limit", "4M")).code == 0
        await queue(home, origin, "a.bin", tmp_path / "a.bin", 2)
        await queue(home, origin, "b.bin", tmp_path / "b.bin", 2)
        # One task each: two processes, each of which alone would take the whole 4M.
        workers = [await start(home, "worker", "--max-tasks", "1") for _ in range(2)]
        try:
            await all_downloading(home, 2)
            # A worker's row counts its tasks at its next look (every watch_seconds) after
            # the claim: under load that may be after `workers` has run once.
            deadline = time.monotonic() + 10
            while True:
                listed = await run(home, "workers", "--json")
                assert listed.code == 0, listed.stderr
                live = [w for w in listed.json()["workers"] if not w["gone"]]
                if sorted(w["tasks"] for w in live) == [1, 1]:
                    break
                assert time.monotonic() < deadline, live
                await asyncio.sleep(0.2)
            await asyncio.sleep(2.0)  # each has looked at the other's lease by now
            a, b = await rates_over(origin, ("a.bin", "b.bin"), 3.0)
        finally:
            for worker in workers:
                await stop(worker)
    together = (a + b) / (4 * MiB)
    assert 0.75 <= together <= 1.25, f"{(a + b) / MiB:.2f} MiB/s together against 4M"
    assert 0.3 <= a / (a + b) <= 0.7, f"a {a / MiB:.2f} MiB/s, b {b / MiB:.2f} MiB/s"


# --- the arithmetic ---------------------------------------------------------------------------


def test_a_process_alone_takes_the_whole_limit_and_every_connection() -> None:
    for share in (ALONE, FleetShare(3, 3), FleetShare(0, 0)):
        assert share.rate(4 * MiB) == 4 * MiB
        assert share.connections(32) == 32
    assert ALONE.rate(None) is None


def test_a_share_follows_the_running_tasks_of_the_fleet() -> None:
    assert FleetShare(1, 4).rate(4 * MiB) == MiB
    assert FleetShare(3, 4).connections(32) == 24
    # About to start its first task next to three others: it counts that task already.
    assert FleetShare(0, 3).rate(4 * MiB) == MiB


def test_a_share_never_falls_below_its_floor_nor_one_connection() -> None:
    crowded = FleetShare(1, 1000)
    assert crowded.rate(50 * MiB) == MiB  # a fiftieth
    assert crowded.rate(2048) == 1024  # nor under 1 KiB/s
    assert crowded.rate(1024) == 1024  # and never above the limit itself
    assert crowded.connections(32) == 1


def test_the_connection_shares_of_a_fleet_stay_within_max_per_host() -> None:
    for total in range(1, 40):
        shares = [FleetShare(1, total).connections(32) for _ in range(total)]
        assert sum(shares) <= max(32, total)
