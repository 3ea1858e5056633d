"""What the CLI prints while it downloads: a plain line only when it says something new,
speed and ETA only once they mean something, and a last frame with every file at 100 %."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random
import re
import signal
from pathlib import Path

import pytest
from clikit import finish, start
from termkit import terminal

from downloader.progress import DownloadStatus, SpeedMeter, report
from downloader.settings import MiB
from downloader.testing.origin import Origin

BAR = re.compile(r"━")


async def test_a_pipe_gets_a_line_only_when_it_changes(tmp_path: Path) -> None:
    home = tmp_path / "home"
    # Nothing listens on port 9: connection refused, again and again, for as long as it runs.
    url, out = "http://127.0.0.1:9/m.bin", f"{tmp_path / 'out'}/"
    get = await start(home, "get", "--no-check", url, "--dest", out)
    await asyncio.sleep(7)  # before, the same line every 2 s
    with contextlib.suppress(ProcessLookupError):  # (its tries may all have been quick)
        get.send_signal(signal.SIGINT)
    got = await finish(get, timeout=30)
    assert got.code in (130, 1), got.stderr  # paused, or failed once out of tries
    lines = got.stdout.splitlines()
    assert lines and all(line.startswith("task 1: ") for line in lines), got.stdout
    # each line differs from the one before (a note comes and goes with each try)
    assert all(a != b for a, b in itertools.pairwise(lines)), got.stdout


def test_speed_says_nothing_before_bytes_have_moved_for_a_second() -> None:
    meter = SpeedMeter()
    meter.add(0, now=100.0)
    meter.add(136, now=100.2)  # a first read: 680 B/s, and an ETA of days
    assert meter.rate() == 0
    meter.add(400_000, now=100.8)
    assert meter.rate() == 0
    meter.add(1_100_000, now=101.1)
    assert meter.rate() == pytest.approx(1_000_000, rel=0.01)


def test_speed_leaves_out_the_wait_for_the_first_byte() -> None:
    meter = SpeedMeter()
    for tenth in range(31):  # three seconds connecting, or told to wait by a 503
        meter.add(0, now=tenth / 10)
    for tenth in range(1, 21):  # then 1 MB/s
        meter.add(tenth * 100_000, now=3 + tenth / 10)
    assert meter.rate() == pytest.approx(1_000_000, rel=0.06)  # not 0.4 MB/s


def test_speed_falls_to_nothing_when_the_bytes_stop_for_a_whole_window() -> None:
    meter = SpeedMeter(window=5)
    for second in range(6):
        meter.add(second * 1_000_000, now=float(second))
    assert meter.rate() > 0
    for second in range(6, 13):
        meter.add(5_000_000, now=float(second))
    assert meter.rate() == 0


def test_without_a_speed_a_report_shows_neither_speed_nor_eta() -> None:
    early = report(DownloadStatus.DOWNLOADING, "x", done=136, total=38 * 10**9, speed=0.0)
    assert early.formatted_speed is None and early.formatted_eta is None
    assert early.eta_seconds is None


@pytest.mark.slow
async def test_the_last_frame_in_a_terminal_shows_every_file_of_completed_tasks_at_100(
    tmp_path: Path,
) -> None:
    home, out = tmp_path / "home", tmp_path / "out"
    rng = random.Random(23)
    files = {f"m{i}.bin": rng.randbytes((3 + i) * MiB) for i in range(3)}
    async with Origin(files, throttle=MiB) as origin:
        urls = [origin.url(name) for name in files]
        args = ("get", *urls, "--dest", f"{out}/", "--connections", "2")
        with terminal(tmp_path, home, *args) as term:
            code, screen = await term.exit_code(timeout=120)
    assert code == 0, screen
    bars = [line for line in screen.splitlines() if BAR.search(line)]
    # the overall bar, and a bar for each task and each file under it
    assert len(bars) == 1 + 2 * len(files), screen
    for name in files:
        assert any(line.startswith(f"  {name} ") for line in bars), screen
    for line in bars:
        assert " 100.0% " in line, screen
