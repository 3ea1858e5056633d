"""kill -9 at random moments: the download resumes from its chunks every time, ends
byte-identical, and refetches no more than the checkpoints allow."""

from __future__ import annotations

import asyncio
import contextlib
import random
import signal
import sqlite3
import subprocess
from pathlib import Path

import pytest
from conftest import PYTHON, python_env
from enginekit import file_sha256

from downloader.settings import MiB, Settings
from downloader.testing.origin import Origin

pytestmark = pytest.mark.slow
HELPER = ["-m", "downloader.testing.fetch"]


def start_child(
    ledger: Path, url: str, dest: Path, connections: int, digest: str
) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [PYTHON, *HELPER, str(ledger), url, str(dest), str(connections), digest],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=python_env(),
    )


def durable_bytes(ledger: Path) -> int:
    """What the ledger holds as durable, read as any other SQLite reader would."""
    if not ledger.exists():
        return 0
    with contextlib.closing(sqlite3.connect(ledger, timeout=30)) as db:
        try:
            return db.execute("SELECT COALESCE(SUM(done), 0) FROM chunks").fetchone()[0]
        except sqlite3.OperationalError:  # the child has not created its tables yet
            return 0


async def test_sigkill_at_five_random_moments_resumes_from_chunks_each_time(
    tmp_path: Path, big_files: Path
) -> None:
    source = big_files / "big.bin"
    size = source.stat().st_size
    connections, throttle = 8, 2 * MiB
    defaults = Settings()
    ledger, dest = tmp_path / "ledger.db", tmp_path / "out" / "big.bin"
    rng = random.Random(99)
    digest = file_sha256(source)  # published, so the SHA-256 hasher runs across restarts
    async with Origin({"big.bin": source}, throttle=throttle) as origin:
        url = origin.url("big.bin")
        for _ in range(5):
            child = start_child(ledger, url, dest, connections, digest)
            # A random moment measured in bytes, not seconds (on a busy machine a child may
            # need seconds just to start), and after the child's first checkpoint, so that
            # every restart has chunks to resume from. 12-40 MiB per child at 16 MiB/s: the
            # first checkpoint (1 s) comes within that, and no child can finish first.
            target = origin.served + rng.randrange(12 * MiB, 40 * MiB)
            before = await asyncio.to_thread(durable_bytes, ledger)
            async with asyncio.timeout(120):
                while child.poll() is None and (
                    origin.served < target
                    or await asyncio.to_thread(durable_bytes, ledger) <= before
                ):
                    await asyncio.sleep(0.01)
            assert child.poll() is None, f"the child ended early: {child.communicate()}"
            child.send_signal(signal.SIGKILL)
            child.wait()
        child = start_child(ledger, url, dest, connections, digest)
        out, err = await asyncio.to_thread(child.communicate, timeout=120)
        served = origin.served
    assert child.returncode == 0, err
    last = out.strip().splitlines()[-1]
    assert last.startswith("done "), out
    assert last.split()[1] == digest == file_sha256(dest)
    assert int(last.split("checked=")[1].split()[0]) > 0  # the unclean stop was noticed
    # Per kill at most: what arrived since the last checkpoint (its byte threshold), each
    # connection's unfinished block and its read buffer; plus the probes.
    per_kill = defaults.checkpoint_bytes + connections * (
        defaults.block_size + 2 * defaults.read_buffer
    )
    allowed = size + 5 * per_kill + 6
    print(f"served {served} for {size}: {served - size} extra, allowed {allowed - size}")
    assert served <= allowed
