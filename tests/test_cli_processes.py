"""The CLI as people use it: Ctrl-C, two terminals, a killed mirror, a real terminal."""

from __future__ import annotations

import asyncio
import random
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest
from clikit import (
    MODELHAUL,
    cli_env,
    downloading,
    durable_chunk_bytes,
    finish,
    ledger_tasks,
    run,
    start,
    wait_for_task,
)
from conftest import system_program

from downloader.settings import MiB
from downloader.testing.origin import Origin
from storage import TaskState

pytestmark = pytest.mark.slow

# "#1 downloading ━━━━━━━━╸━━━━━━━━  25.0% 8.4 MB / 33.6 MB 4.3 MB/s ETA 6s"
BAR = re.compile(
    r"^#1 downloading +[━╸╺ ]+ +(?P<percent>\d+\.\d)% (?P<done>[\d.]+) MB / 33\.6 MB "
    r"(?P<speed>[\d.]+) MB/s ETA (?P<eta>\d+)s$",
    re.MULTILINE,
)


async def test_ctrl_c_pauses_and_the_same_get_resumes_byte_identical(tmp_path: Path) -> None:
    home, dest = tmp_path / "home", tmp_path / "m.bin"
    data = random.Random(3).randbytes(24 * MiB)
    argv = ("get", "", "-o", str(dest), "--connections", "4")
    async with Origin({"m.bin": data}, throttle=MiB) as origin:
        argv = (argv[0], origin.url("m.bin"), *argv[2:])
        first = await start(home, *argv)
        task = await wait_for_task(home, lambda t: downloading(t, 4 * MiB))
        first.send_signal(signal.SIGINT)
        stopped = await finish(first, timeout=30)
        assert stopped.code == 130, stopped.stderr
        assert f"modelhaul resume {task.id}" in stopped.stderr
        [paused] = await ledger_tasks(home)
        assert paused.state is TaskState.PAUSED
        kept = await durable_chunk_bytes(home, task.id)
        assert kept >= 4 * MiB and kept == paused.downloaded_bytes
        served_before = origin.served

        again = await run(home, *argv, timeout=120)
        assert again.code == 0, again.stderr
        fetched_again = origin.served - served_before
    assert dest.read_bytes() == data
    [done] = await ledger_tasks(home)
    assert done.id == task.id and done.state is TaskState.COMPLETED
    # A clean pause keeps every byte it received: the resume fetches only what was missing
    # (plus the one-byte probe of get's disk-space check).
    assert fetched_again == len(data) - kept + 1


async def test_pause_in_one_terminal_pauses_a_get_in_another(tmp_path: Path) -> None:
    home, dest = tmp_path / "home", tmp_path / "m.bin"
    data = random.Random(4).randbytes(16 * MiB)
    async with Origin({"m.bin": data}, throttle=MiB) as origin:
        # Two connections: 8 s of download, time enough for the pause even on a busy machine
        get = await start(home, "get", origin.url("m.bin"), "-o", str(dest), "--connections", "2")
        task = await wait_for_task(home, lambda t: downloading(t, MiB))
        paused = await run(home, "pause", str(task.id), "--json")
        assert paused.code == 0, paused.stderr
        assert paused.json() == [{"id": task.id, "state": "paused"}]
        ended = await finish(get, timeout=30)
    assert ended.code == 130
    assert f"task {task.id} was paused" in ended.stderr
    [after] = await ledger_tasks(home)
    assert after.state is TaskState.PAUSED and after.downloaded_bytes >= MiB
    assert dest.with_name("m.bin.part").exists() and not dest.exists()


async def test_a_mirror_killed_with_sigkill_completes_every_entry_once_when_run_again(
    tmp_path: Path,
) -> None:
    home, out = tmp_path / "home", tmp_path / "mirror"
    rng = random.Random(5)
    files = {f"model-{i:02d}.bin": rng.randbytes(384 * 1024 + i) for i in range(50)}
    async with Origin(files, throttle=1 * MiB) as origin:
        manifest = tmp_path / "models.txt"
        manifest.write_text(
            "# fifty models\n" + "".join(f"{origin.url(name)} mirror/{name}\n" for name in files)
        )
        first = await start(home, "mirror", str(manifest), "--max-tasks", "4")
        await wait_for_task(home, lambda t: t.id >= 10 and t.state is TaskState.COMPLETED)
        first.kill()
        await finish(first)
        before = await ledger_tasks(home)
        done_before = {t.id for t in before if t.state is TaskState.COMPLETED}
        served_before = dict(origin.served_by_file)
        assert len(before) == 50 and 0 < len(done_before) < 50

        second = await run(home, "mirror", str(manifest), "--max-tasks", "4")
        assert second.code == 0, second.stderr
        assert f"{len(done_before)} were already done" in second.stdout
    after = await ledger_tasks(home)
    assert sorted(t.id for t in after) == sorted(t.id for t in before)  # no entry twice
    assert {t.state for t in after} == {TaskState.COMPLETED}
    by_dest = {Path(t.destination).name: t for t in after}
    for name, content in files.items():
        assert (out / name).read_bytes() == content
        if by_dest[name].id in done_before:  # finished before the kill: never fetched again
            assert origin.served_by_file.get(name, 0) == served_before.get(name, 0)


async def test_the_progress_display_in_a_terminal_shows_percent_speed_and_eta(
    tmp_path: Path,
) -> None:
    tmux_program = system_program("tmux")
    home, dest = tmp_path / "home", tmp_path / "big.bin"
    data = random.Random(6).randbytes(32 * MiB)
    session = f"modelhaul-{time.monotonic_ns()}"
    socket = str(tmp_path / "tmux.sock")
    async with Origin({"big.bin": data}, throttle=MiB) as origin:
        command = f"{MODELHAUL} get {origin.url('big.bin')} -o {dest} --connections 4"
        tmux = [tmux_program, "-S", socket]
        subprocess.run(
            [*tmux, "new-session", "-d", "-s", session, "-x", "150", "-y", "30", command],
            check=True,
            env=cli_env(home),
        )
        try:
            screen, bar = "", None
            async with asyncio.timeout(30):
                while bar is None:
                    await asyncio.sleep(0.3)
                    screen = subprocess.run(
                        [*tmux, "capture-pane", "-p", "-t", session],
                        capture_output=True,
                        text=True,
                        check=True,
                    ).stdout
                    bar = BAR.search(screen)
        finally:
            subprocess.run([*tmux, "kill-server"], check=False)
    assert 0 < float(bar["percent"]) < 100
    assert float(bar["done"]) > 0 and float(bar["speed"]) > 0 and int(bar["eta"]) > 0
    # and a bar for the file in flight under it
    assert re.search(r"^  big\.bin +━+.* \d+\.\d% ", screen, re.MULTILINE), screen


async def test_the_demo_runs_offline_and_proves_what_it_claims(tmp_path: Path) -> None:
    got = await run(tmp_path / "unused-home", "demo", "--size", "24M", timeout=180)
    assert got.code == 0, got.stdout + got.stderr
    assert "killed worker" in got.stdout and "with SIGKILL" in got.stdout
    assert "every file matches its source" in got.stdout
    assert "huggingface_hub finds modelhaul-demo/tiny-llama in its cache: 5 files" in got.stdout
    faults = int(got.stdout.split("faults")[1].split()[0])
    assert faults >= 4
    assert not (tmp_path / "unused-home").exists()  # the demo keeps to its own folder
