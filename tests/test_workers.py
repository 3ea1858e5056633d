"""The workers table: a manager that runs downloads is listed (host, pid, tasks, rate, last
heartbeat) from its start until it closes; a row whose heartbeat went stale counts as gone
and is deleted by the next manager that beats; ``modelhaul workers`` shows them."""

from __future__ import annotations

import asyncio
import os
import socket
import time
from pathlib import Path

from clikit import run
from managerkit import manager_settings

from downloader import DownloadManager
from downloader.testing.origin import Origin
from storage import Lease, Ledger, NewTask, TaskState, WorkerRecord, open_ledger

MiB = 1 << 20


def _row(owner: str, beat: float, tasks: int = 0) -> WorkerRecord:
    return WorkerRecord(owner, "elsewhere", 7, beat - 60, beat, tasks, 1000, "0.1.0")


async def test_a_row_is_written_renewed_and_deleted(ledger: Ledger) -> None:
    now = time.time()
    await ledger.workers.beat(_row("h:7:1.00", now - 5, tasks=1))
    await ledger.workers.beat(_row("h:7:1.00", now, tasks=3))
    [row] = await ledger.workers.list()
    assert (row.owner, row.tasks, row.heartbeat_at) == ("h:7:1.00", 3, now)
    await ledger.workers.leave("h:7:1.00")
    assert await ledger.workers.list() == []


async def test_prune_deletes_only_the_rows_whose_heartbeat_is_stale(ledger: Ledger) -> None:
    now = time.time()
    await ledger.workers.beat(_row("old:1:1.00", now - 31))
    await ledger.workers.beat(_row("new:1:1.00", now - 29))
    assert await ledger.workers.prune(30.0, now) == 1
    assert [w.owner for w in await ledger.workers.list()] == ["new:1:1.00"]
    assert [w.gone(now, 30.0) for w in await ledger.workers.list()] == [False]


async def test_running_elsewhere_counts_live_leases_of_other_owners_only(
    ledger: Ledger, lease: Lease
) -> None:
    other = Lease("elsewhere", 7, 1.0)
    await ledger.tasks.enqueue([NewTask("url", f"http://e/{i}", f"/d/{i}") for i in range(5)])
    await ledger.tasks.claim(lease, 2)
    claimed = await ledger.tasks.claim(other, 3)
    assert await ledger.workers.running_elsewhere(lease.owner, 30.0) == 3
    assert await ledger.workers.running_elsewhere(other.owner, 30.0) == 2
    # The other's leases go stale: its tasks no longer count against anyone's share.
    later = time.time() + 31
    assert await ledger.workers.running_elsewhere(lease.owner, 30.0, later) == 0
    assert all(t.state is TaskState.DOWNLOADING for t in claimed)


async def test_a_manager_running_a_download_is_a_worker_until_it_closes(tmp_path: Path) -> None:
    payload = os.urandom(8 * MiB)
    settings = manager_settings(tmp_path / "home", heartbeat_seconds=0.2, rate_limit=2 * MiB)
    async with Origin({"m.bin": payload}) as origin:
        async with DownloadManager(settings) as manager:
            task = await manager.add(origin.url("m.bin"), dest=tmp_path / "out")
            async with asyncio.timeout(30):
                while True:
                    rows = await manager.ledger.workers.list()
                    if rows and rows[0].tasks == 1 and rows[0].rate > 0:
                        break
                    await asyncio.sleep(0.1)
            [row] = rows
            assert row.owner == manager.lease.owner
            assert (row.host, row.pid) == (socket.gethostname(), os.getpid())
            assert row.rate <= 3 * MiB  # receiving at about its limit
            shown = await manager.get(task.id)
            assert shown.lease is not None and shown.lease.owner == row.owner
        ledger = await open_ledger(settings.ledger_target)
        try:
            assert await ledger.workers.list() == []  # a clean close deletes its row
        finally:
            await ledger.close()


async def test_a_manager_that_only_controls_is_not_a_worker(tmp_path: Path) -> None:
    settings = manager_settings(tmp_path / "home")
    async with DownloadManager(settings, autostart=False) as manager:
        await manager.list()
        await asyncio.sleep(0.3)
        assert await manager.ledger.workers.list() == []


async def test_the_workers_command_lists_live_ones_first_and_marks_the_gone(
    tmp_path: Path,
) -> None:
    home = tmp_path / "home"
    ledger = await open_ledger(home / "ledger.db")
    now = time.time()
    try:
        await ledger.workers.beat(_row("dead:9:1.00", now - 300))
        await ledger.workers.beat(_row("live:8:1.00", now - 1, tasks=2))
    finally:
        await ledger.close()
    listed = await run(home, "workers", "--json")
    assert listed.code == 0, listed.stderr
    rows = listed.json()["workers"]
    assert [(w["owner"], w["gone"], w["tasks"]) for w in rows] == [
        ("live:8:1.00", False, 2),
        ("dead:9:1.00", True, 0),
    ]
    assert rows[1]["seconds_since_heartbeat"] >= 299
    table = await run(home, "workers")
    assert table.code == 0, table.stderr
    lines = table.stdout.splitlines()
    assert "HOST" in lines[0] and "HEARTBEAT" in lines[0]
    assert "gone" in lines[2] and "gone" not in lines[1]
    empty = await run(tmp_path / "other", "workers")
    assert empty.code == 0 and "no workers" in empty.stdout
