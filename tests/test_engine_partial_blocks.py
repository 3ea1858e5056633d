"""Checkpoints record each connection's partial block: a kill costs about one checkpoint
interval of traffic whatever the number of connections, a partial block is checked before
it is continued, and a clean pause keeps it without re-reading the file."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import sqlite3
import subprocess
import time
from contextlib import closing
from pathlib import Path

import pytest
from conftest import PYTHON, python_env
from enginekit import add_file, engine, fetch, run_until, small_settings

from downloader.engine.partfile import bad_block_offsets
from downloader.settings import MiB, Settings
from downloader.testing.origin import Origin
from storage import ChunkRecord, FileState, Ledger

SIZE = 40 * MiB + 999
SLOW = 300_000  # bytes per second per connection: the slow link
CONNECTIONS = 16


@pytest.fixture(scope="module")
def data() -> bytes:
    return random.Random(20).randbytes(SIZE)


def partial(chunks: list[ChunkRecord]) -> list[ChunkRecord]:
    """The chunks whose durable bytes end inside a block."""
    return [c for c in chunks if c.done % MiB and not c.finished]


def parse(header: str) -> tuple[int, int]:
    first, last = header.removeprefix("bytes=").split("-")
    return int(first), int(last) + 1


async def pause_at(ctx, ledger: Ledger, record, written: int) -> int:
    """Run the download in this process and pause it (cancel) once ``written`` bytes are
    in the .part; returns the bytes written by then."""
    return (await run_until(ctx, ledger, record, written)).written


def assert_digests_match(part: Path, chunks: list[ChunkRecord]) -> None:
    """Every digest the ledger holds is that of the bytes on disk: a block continued after
    a resume was hashed from its start, not from where the resume began."""
    with part.open("rb") as f:
        for c in chunks:
            assert bad_block_offsets(f.fileno(), c.start, c.done, MiB, c.xxh3) == []


async def test_a_clean_pause_records_partial_blocks_and_resume_continues_them_unread(
    ledger: Ledger, tmp_path: Path, data: bytes
) -> None:
    async with Origin({"m.bin": data}, throttle=2 * MiB) as origin:
        record = await add_file(ledger, origin.url("m.bin"), tmp_path / "m.bin")
        async with engine(ledger, small_settings(tmp_path)) as ctx:
            written = await pause_at(ctx, ledger, record, 10 * MiB)
            paused = await ledger.files.get(record.id)
            chunks = await ledger.files.chunks(record.id)
            assert not paused.dirty
            assert paused.downloaded_bytes == written  # every written byte, partial blocks too
            assert partial(chunks), "no connection stopped inside a block"
            before = len(origin.log)
            done, progress = await fetch(ctx, ledger, paused)
            final = await ledger.files.chunks(record.id)
        asked = [parse(r.range) for r in origin.log[before:] if r.range and r.range != "bytes=0-0"]
    assert done.state is FileState.COMPLETED
    assert (tmp_path / "m.bin").read_bytes() == data
    assert progress.checked == 0, "a clean resume re-hashed written blocks"
    for c in partial(chunks):  # continued where it stopped, mid-block
        assert any(a == c.start + c.done for a, _ in asked), f"chunk {c.start} not resumed"
    assert progress.fetched <= SIZE - written
    assert_digests_match(tmp_path / "m.bin", final)


async def test_a_partial_block_changed_behind_a_clean_pause_is_fetched_again_from_its_block(
    ledger: Ledger, tmp_path: Path, data: bytes
) -> None:
    async with Origin({"m.bin": data}, throttle=2 * MiB) as origin:
        record = await add_file(ledger, origin.url("m.bin"), tmp_path / "m.bin")
        async with engine(ledger, small_settings(tmp_path)) as ctx:
            await pause_at(ctx, ledger, record, 10 * MiB)
            victim = partial(await ledger.files.chunks(record.id))[0]
            part = tmp_path / "m.bin.part"
            # Damage the partial prefix but keep the mtime: the stop still looks clean, so
            # only the re-read that seeds the running digest can notice.
            stat = part.stat()
            with part.open("r+b") as f:
                f.seek(victim.start + victim.done - 1)
                f.write(b"\xff" if data[victim.start + victim.done - 1] != 0xFF else b"\x00")
            os.utime(part, ns=(stat.st_atime_ns, stat.st_mtime_ns))
            before = len(origin.log)
            done, progress = await fetch(ctx, ledger, await ledger.files.get(record.id))
            final = await ledger.files.chunks(record.id)
        asked = [parse(r.range) for r in origin.log[before:] if r.range and r.range != "bytes=0-0"]
    assert done.state is FileState.COMPLETED
    assert (tmp_path / "m.bin").read_bytes() == data
    assert progress.checked == 0  # the file was not re-hashed, only the partial block re-read
    block = victim.start + victim.done // MiB * MiB
    assert any(a == block for a, _ in asked), f"no request from the block at {block}: {asked}"
    notes = [e.reason for e in await ledger.tasks.events(record.task_id)]
    assert any("partly written blocks did not match" in n for n in notes), notes
    assert_digests_match(tmp_path / "m.bin", final)


# --- SIGKILL, in a child process --------------------------------------------------------


def start_child(ledger: Path, url: str, dest: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [PYTHON, "-m", "downloader.testing.fetch", str(ledger), url, str(dest), str(CONNECTIONS)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=python_env(),
    )


def ledger_chunks(ledger: Path) -> list[ChunkRecord]:
    """The chunks as any SQLite reader sees them."""
    if not ledger.exists():
        return []
    with closing(sqlite3.connect(ledger, timeout=30)) as db:
        try:
            rows = db.execute("SELECT file_id, start, end, done, xxh3 FROM chunks").fetchall()
        except sqlite3.OperationalError:  # the child has not created its tables yet
            return []
    return [ChunkRecord(f, s, e, d, bytes(x)) for f, s, e, d, x in rows]


def notes(ledger: Path) -> list[str]:
    with closing(sqlite3.connect(ledger, timeout=30)) as db:
        return [r[0] for r in db.execute("SELECT reason FROM events").fetchall()]


async def kill_mid_download(origin: Origin, ledger: Path, dest: Path) -> tuple[int, float]:
    """Start a child on the slow origin and SIGKILL it once 20 MiB were served and it has
    checkpointed; returns the bytes served and not recorded, and the rate (bytes/s) the
    origin served at over the last two seconds before the kill."""
    child = start_child(ledger, origin.url("m.bin"), dest)
    async with asyncio.timeout(120):
        while child.poll() is None and (
            origin.served < 20 * MiB
            or not sum(c.done for c in await asyncio.to_thread(ledger_chunks, ledger))
        ):
            await asyncio.sleep(0.01)
    assert child.poll() is None, f"the child ended early: {child.communicate()}"
    now = time.monotonic()
    child.send_signal(signal.SIGKILL)
    child.wait()
    served = origin.served
    rate = origin.served_between(now - 2, now) / 2
    recorded = sum(c.done for c in await asyncio.to_thread(ledger_chunks, ledger))
    return served - recorded, rate


@pytest.mark.slow
async def test_a_sigkill_with_16_slow_connections_loses_about_one_checkpoint_interval(
    tmp_path: Path, data: bytes
) -> None:
    defaults = Settings()
    ledger, dest = tmp_path / "ledger.db", tmp_path / "out" / "m.bin"
    async with Origin({"m.bin": data}, throttle=SLOW) as origin:
        lost, rate = await kill_mid_download(origin, ledger, dest)
        assert partial(await asyncio.to_thread(ledger_chunks, ledger))
        child = start_child(ledger, origin.url("m.bin"), dest)
        _, err = await asyncio.to_thread(child.communicate, timeout=120)
        served = origin.served
    assert child.returncode == 0, err
    assert dest.read_bytes() == data
    # What arrived since the last checkpoint began (its interval, and the checkpoint's own
    # time on a busy machine: half an interval more), what waited for a fuller write (a
    # quarter of the interval), and each connection's read buffers in flight. Partial
    # blocks are not lost any more: before, each of the 16 connections lost up to 1 MiB.
    seconds = defaults.checkpoint_seconds * (1.5 + 0.25)
    allowed = rate * seconds + CONNECTIONS * 2 * defaults.read_buffer
    print(f"lost {lost / MiB:.2f} MiB at {rate / MiB:.2f} MiB/s; allowed {allowed / MiB:.2f}")
    assert lost <= allowed
    assert lost < 8 * MiB  # far under the 16 MiB that 16 partial blocks could cost
    assert served - SIZE <= lost + 64 * 1024  # the resume fetched nothing recorded again


@pytest.mark.slow
async def test_a_partial_block_damaged_after_a_sigkill_is_found_and_fetched_again(
    tmp_path: Path, data: bytes
) -> None:
    ledger, dest = tmp_path / "ledger.db", tmp_path / "out" / "m.bin"
    async with Origin({"m.bin": data}, throttle=SLOW) as origin:
        await kill_mid_download(origin, ledger, dest)
        victim = partial(await asyncio.to_thread(ledger_chunks, ledger))[0]
        with (tmp_path / "out" / "m.bin.part").open("r+b") as f:
            f.seek(victim.start + victim.done - 1)
            f.write(b"\xff" if data[victim.start + victim.done - 1] != 0xFF else b"\x00")
        child = start_child(ledger, origin.url("m.bin"), dest)
        out, err = await asyncio.to_thread(child.communicate, timeout=120)
    assert child.returncode == 0, err
    assert int(out.split("checked=")[1].split()[0]) > 0  # the unclean stop was noticed
    assert dest.read_bytes() == data
    said = notes(ledger)
    assert any("1 written block(s) did not match their XXH3 digests" in n for n in said), said
