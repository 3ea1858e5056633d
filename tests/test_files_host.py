"""Which host holds a task's files: each run records its host as it starts writing them
(``tasks.files_host``), so a finished file's host is known (``ls``, ``show``, the JSON) and a
takeover on another host that finds no ``.part`` says whose disk it was on."""

from __future__ import annotations

import asyncio
import random
import socket
import sqlite3
from pathlib import Path

from clikit import run
from managerkit import manager_settings, until

from downloader import DownloadManager
from downloader.settings import MiB
from downloader.testing.origin import Origin
from storage import TaskState

DATA = random.Random(21).randbytes(16 * MiB)


def _set_files_host(ledger_file: Path, task_id: int, host: str) -> None:
    """What a run on another host leaves in the shared ledger."""
    with sqlite3.connect(ledger_file) as db:
        db.execute("UPDATE tasks SET files_host = ? WHERE id = ?", (host, task_id))


async def test_a_completed_task_names_the_host_that_wrote_its_files(tmp_path: Path) -> None:
    home = tmp_path / "home"
    async with (
        Origin({"m.bin": DATA[: 2 * MiB]}) as origin,
        DownloadManager(manager_settings(home)) as manager,
    ):
        task = await manager.add(origin.url("m.bin"), dest=tmp_path / "out")
        done = await manager.wait(task.id)
    here = socket.gethostname()
    assert done.state is TaskState.COMPLETED and done.files_host == here
    listed = await run(home, "ls", "--json")
    assert listed.json()[0]["files_host"] == here
    table = await run(home, "ls")
    assert "HOST" not in table.stdout  # all on this host: no column to repeat it
    shown = await run(home, "show", str(task.id))
    assert f"host      {here}" in shown.stdout
    # Finished on another machine (a per-host --dest): ls names it.
    _set_files_host(home / "ledger.db", task.id, "gpu-7")
    table = await run(home, "ls")
    assert "HOST" in table.stdout.splitlines()[0] and "gpu-7" in table.stdout


async def test_a_takeover_from_another_host_without_its_part_says_where_it_was(
    tmp_path: Path,
) -> None:
    home = tmp_path / "home"
    settings = manager_settings(home, connections=2)
    async with Origin({"m.bin": DATA}, throttle=2 * MiB) as origin:
        async with DownloadManager(settings) as manager:
            task = await manager.add(origin.url("m.bin"), dest=tmp_path / "out")
            await until(manager.ledger, task.id, lambda t: t.downloaded_bytes >= 4 * MiB)
            await manager.pause(task.id)
        # The run was on "gpu-7", whose disk this host does not see: no .part here.
        [part] = tmp_path.rglob("*.part")
        part.unlink()
        _set_files_host(home / "ledger.db", task.id, "gpu-7")
        async with DownloadManager(settings) as manager:
            await manager.resume(task.id)
            async with asyncio.timeout(60):
                done = await manager.wait(task.id)
            notes = [e.reason for e in await manager.history(task.id)]
    assert done.state is TaskState.COMPLETED and done.files_host == socket.gethostname()
    assert Path(done.destination).read_bytes() == DATA
    assert any(
        ".part is missing (it was written on host gpu-7, not reachable from this one)" in n
        for n in notes
    ), notes
