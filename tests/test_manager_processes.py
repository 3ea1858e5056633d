"""Control through the ledger across real processes: pause and resume from another process,
cancel with purge, and a SIGKILLed worker's tasks taken over by the next one."""

from __future__ import annotations

import asyncio
import random
import signal
import time
from pathlib import Path

import pytest
from managerkit import child, control, settled, until

from downloader import DownloadManager, Settings
from downloader.settings import MiB
from downloader.testing.origin import Origin
from storage import TaskState, open_ledger

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def data() -> bytes:
    return random.Random(41).randbytes(48 * MiB)


async def test_pause_from_another_process_stops_the_runner_within_a_second_and_resume_completes(
    tmp_path: Path, data: bytes
) -> None:
    home = tmp_path / "home"
    async with Origin({"m.bin": data}, throttle=2 * MiB) as origin:
        worker = child(home, "worker.py")
        try:
            assert worker.stdout.readline().strip() == "ready"
            async with await open_ledger(home / "ledger.db") as ledger:
                async with DownloadManager(Settings(home=home), autostart=False) as m:
                    task = await m.add(origin.url("m.bin"), dest=tmp_path / "out" / "m.bin")
                await until(ledger, task.id, lambda t: t.downloaded_bytes >= 8 * MiB)

                assert control(home, "pause", task.id) == "paused"
                paused_at = time.monotonic()
                await asyncio.sleep(1.0)
                served = origin.served
                await asyncio.sleep(1.5)
                assert origin.served == served, "bytes kept arriving after the pause"
                stopped = await ledger.tasks.get(task.id)
                assert stopped.state is TaskState.PAUSED and stopped.lease is None
                assert time.monotonic() - paused_at < 10

                assert control(home, "resume", task.id) == "pending"
                done = await until(ledger, task.id, settled)
                assert done.state is TaskState.COMPLETED, done.error
                reasons = [e.reason for e in await ledger.tasks.events(task.id)]
                assert "paused" in reasons and "resumed" in reasons
        finally:
            worker.kill()
            worker.wait()
    assert (tmp_path / "out" / "m.bin").read_bytes() == data


async def test_cancel_with_purge_from_another_process_removes_the_part_file(
    tmp_path: Path, data: bytes
) -> None:
    home = tmp_path / "home"
    async with Origin({"m.bin": data}, throttle=2 * MiB) as origin:
        worker = child(home, "worker.py")
        try:
            assert worker.stdout.readline().strip() == "ready"
            async with DownloadManager(Settings(home=home), autostart=False) as m:
                task = await m.add(origin.url("m.bin"), dest=tmp_path / "m.bin")
            async with await open_ledger(home / "ledger.db") as ledger:
                await until(ledger, task.id, lambda t: t.downloaded_bytes >= 4 * MiB)
                assert (tmp_path / "m.bin.part").exists()
                assert control(home, "cancel-purge", task.id) == "cancelled"
                deadline = time.monotonic() + 5
                while (tmp_path / "m.bin.part").exists():
                    assert time.monotonic() < deadline, "the running process did not purge"
                    await asyncio.sleep(0.05)
        finally:
            worker.kill()
            worker.wait()


async def test_a_sigkilled_worker_s_three_tasks_are_requeued_and_finished_from_their_chunks(
    tmp_path: Path, data: bytes
) -> None:
    home = tmp_path / "home"
    names = ["a.bin", "b.bin", "c.bin"]
    data = data[: 24 * MiB]
    # Four links per file, so the three share the per-host limit and run side by side.
    env = {"MODELHAUL_CONNECTIONS": "4"}
    async with Origin({n: data for n in names}, throttle=MiB) as origin:
        async with DownloadManager(Settings(home=home), autostart=False) as m:
            tasks = [await m.add(origin.url(n), dest=tmp_path / "out" / n) for n in names]
        first = child(home, "worker.py", "3", env=env)
        async with await open_ledger(home / "ledger.db") as ledger:
            assert first.stdout.readline().strip() == "ready"
            for t in tasks:
                await until(ledger, t.id, lambda t: t.downloaded_bytes >= 4 * MiB)
            held = [await ledger.tasks.get(t.id) for t in tasks]
            assert all(t.state is TaskState.DOWNLOADING for t in held), [
                (t.id, t.state, t.downloaded_bytes, t.total_bytes) for t in held
            ]
            first.send_signal(signal.SIGKILL)
            first.wait()
            durable = {t.id: (await ledger.tasks.get(t.id)).downloaded_bytes for t in tasks}
            served_before = dict(origin.served_by_file)

            second = child(home, "worker.py", "3", env=env)
            try:
                assert second.stdout.readline().strip() == "ready"
                for t in tasks:
                    done = await until(ledger, t.id, settled)
                    assert done.state is TaskState.COMPLETED, done.error
                    reasons = [e.reason for e in await ledger.tasks.events(t.id)]
                    assert any(
                        r.startswith("requeued from ") and r.endswith("its process is gone")
                        for r in reasons
                    )
            finally:
                second.kill()
                second.wait()
        for t, name in zip(tasks, names, strict=True):
            assert (tmp_path / "out" / name).read_bytes() == data
            refetched = origin.served_by_file[name] - served_before[name]
            # the second worker fetched what was not durable, not the whole file again
            assert refetched <= len(data) - durable[t.id] + 4 * 2 * MiB
