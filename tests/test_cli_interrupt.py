"""Ctrl-C, wherever it lands: exit 130, one line saying how to go on, never a traceback or an
asyncio complaint; a download it stops is paused, not left queued or claimed."""

from __future__ import annotations

import asyncio
import random
import signal
from pathlib import Path

import pytest
from clikit import downloading, finish, ledger_tasks, run, start, wait_for_task
from termkit import terminal

from downloader.settings import MiB
from downloader.testing.origin import Origin
from storage import TaskState

pytestmark = pytest.mark.slow

# What must never reach a user's terminal.
NOISE = ("Traceback", "never retrieved", "Task was destroyed", "Exception ignored", "ERROR")


def assert_quiet(text: str) -> None:
    for noise in NOISE:
        assert noise not in text, text


async def test_ctrl_c_in_a_terminal_pauses_the_download_and_says_how_to_continue(
    tmp_path: Path,
) -> None:
    home, out = tmp_path / "home", tmp_path / "out"
    data = random.Random(21).randbytes(16 * MiB)
    async with Origin({"m.bin": data}, throttle=MiB) as origin:
        args = ("get", origin.url("m.bin"), "--dest", f"{out}/", "--connections", "2")
        with terminal(tmp_path, home, *args) as term:
            task = await wait_for_task(home, lambda t: downloading(t, MiB))
            term.press("C-c")
            code, screen = await term.exit_code()
    assert code == 130, screen
    assert_quiet(screen)
    assert f"paused task {task.id} at" in screen
    assert f"run the same command again, or 'modelhaul resume {task.id}', to continue" in screen
    [after] = await ledger_tasks(home)
    assert after.state is TaskState.PAUSED and after.downloaded_bytes >= MiB


async def test_ctrl_c_while_get_checks_the_remote_ends_at_once_with_nothing_queued(
    tmp_path: Path,
) -> None:
    home, out = tmp_path / "home", tmp_path / "out"
    asked = asyncio.Event()

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readline()  # the check's request arrives; no answer comes
        asked.set()
        await asyncio.sleep(60)
        writer.close()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        get = await start(home, "get", f"http://127.0.0.1:{port}/m.bin", "--dest", f"{out}/")
        await asyncio.wait_for(asked.wait(), 30)
        get.send_signal(signal.SIGINT)
        got = await finish(get, timeout=30)
    finally:
        server.close()
    assert got.code == 130, got.stderr
    assert_quiet(got.stderr)
    assert got.stderr == "modelhaul: interrupted; run the same command again to continue\n"
    assert not (home / "ledger.db").exists() or await ledger_tasks(home) == []


async def test_ctrl_c_at_any_moment_of_a_get_ends_with_130_and_one_line(tmp_path: Path) -> None:
    """From the first import to the download: each run interrupted a little later."""
    data = random.Random(22).randbytes(8 * MiB)
    async with Origin({"m.bin": data}, throttle=MiB) as origin:  # 4 s on two connections
        for i, delay in enumerate((0.02, 0.05, 0.1, 0.2, 0.3, 0.45, 0.6, 0.8, 1.0, 1.5, 2.5)):
            home, out = tmp_path / f"home{i}", tmp_path / f"out{i}"
            args = ("get", origin.url("m.bin"), "--dest", f"{out}/", "--connections", "2")
            get = await start(home, *args)
            await asyncio.sleep(delay)
            get.send_signal(signal.SIGINT)
            got = await finish(get, timeout=60)
            where = f"SIGINT after {delay} s: {got.stderr!r}"
            if got.code == -signal.SIGINT:
                # Before any of modelhaul's code ran: in the interpreter's own start, or the
                # 'import re, sys' of the launcher pip writes. Not a line of ours is in it.
                assert "/downloader/" not in got.stderr and "/storage/" not in got.stderr, where
                continue
            assert got.code == 130, where
            assert_quiet(got.stderr)
            [line] = got.stderr.splitlines()
            assert line.endswith(("to continue", "nothing was changed")), where
            tasks = await ledger_tasks(home) if (home / "ledger.db").exists() else []
            # Never left claimed by a process that is gone: paused, or (if the interrupt
            # came before the download was queued) not there at all.
            assert all(t.state is not TaskState.DOWNLOADING for t in tasks), where
            for t in tasks:
                if t.state is TaskState.PAUSED:
                    assert f"'modelhaul resume {t.id}'" in line, where


async def test_resume_of_a_queued_task_says_it_is_queued_and_how_to_run_the_queue(
    tmp_path: Path,
) -> None:
    home = tmp_path / "home"
    queued = await run(home, "get", "--detach", "--no-check", "http://127.0.0.1:9/m.bin")
    assert queued.code == 0, queued.stderr
    [task] = await ledger_tasks(home)
    for detach in ((), ("--detach",)):
        got = await run(home, "resume", str(task.id), *detach)
        assert got.code == 0, got.stderr
        assert got.stderr == ""
        assert f"task {task.id} is queued already: 'modelhaul worker' runs the queue" in got.stdout
    as_json = await run(home, "resume", str(task.id), "--detach", "--json")
    assert as_json.json() == [{"id": task.id, "state": "pending"}]
    [after] = await ledger_tasks(home)
    assert after.state is TaskState.PENDING


async def test_ctrl_c_twice_stops_a_worker_quietly_with_its_task_back_in_the_queue(
    tmp_path: Path,
) -> None:
    home = tmp_path / "home"
    data = random.Random(24).randbytes(16 * MiB)
    async with Origin({"m.bin": data}, throttle=MiB) as origin:
        url, dest = origin.url("m.bin"), f"{tmp_path}/"
        queued = await run(home, "get", "--detach", url, "--dest", dest, "--connections", "2")
        assert queued.code == 0, queued.stderr
        worker = await start(home, "worker")
        await wait_for_task(home, lambda t: downloading(t, 1))
        worker.send_signal(signal.SIGINT)
        worker.send_signal(signal.SIGINT)  # impatient: the second lands as it cleans up
        got = await finish(worker, timeout=30)
    assert got.code == 0, got.stderr
    assert_quiet(got.stderr)
    [task] = await ledger_tasks(home)
    assert task.state is TaskState.PENDING  # a worker's tasks go back to the queue
