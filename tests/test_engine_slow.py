"""Slow connections do not hold the tail: a connection far below the others has its range
moved to a fresh connection, the file stays byte-exact, and its chunks stay consistent
through a kill -9 after a move."""

from __future__ import annotations

import asyncio
import signal
import sqlite3
import time
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import PYTHON, python_env
from enginekit import add_file, engine, fetch, file_sha256, small_settings

from downloader.engine.partfile import PartFile
from downloader.engine.plan import Plan
from downloader.settings import MiB
from downloader.testing.origin import Origin, RequestLog, SlowEdges
from storage import ChunkRecord, open_ledger

pytestmark = pytest.mark.slow
FAST = 8 * MiB  # per connection: a 4 s run, so the judging time weighs little
SLOW = FAST // 20


@dataclass(frozen=True)
class Timed:
    """One download of the big file: how long it took, what the origin saw, the result."""

    seconds: float
    log: list[RequestLog]
    capped: set[int]
    sent: dict[int, int]  # bytes by client port
    path: Path


async def timed_fetch(tmp_path: Path, source: Path, slow: SlowEdges | None, name: str) -> Timed:
    """Download ``source`` from an origin at ``FAST`` per connection (some capped by
    ``slow``) into a fresh ledger, with the default settings: a connection at a twentieth
    of the others is judged after a quarter of ``slow_seconds``."""
    settings = small_settings(tmp_path / name)  # the default slow_seconds
    async with (
        await open_ledger(str(tmp_path / f"{name}.db")) as ledger,
        Origin({"big.bin": source}, throttle=FAST, slow=slow) as origin,
    ):
        record = await add_file(ledger, origin.url("big.bin"), tmp_path / name / "big.bin")
        async with engine(ledger, settings) as ctx:
            began = time.monotonic()
            done, _ = await fetch(ctx, ledger, record)
            took = time.monotonic() - began
    capped = slow.capped if slow else set()
    return Timed(took, origin.log, capped, origin.served_by_peer, Path(done.local_path))


@pytest.fixture(scope="module")
def runs(big_files: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Timed, Timed]:
    """The same 256 MiB file without slow connections, then with every fourth connection
    at 1/20 of the others' rate."""
    tmp = tmp_path_factory.mktemp("slow-edges")
    source = big_files / "big.bin"

    async def both() -> tuple[Timed, Timed]:
        even = await timed_fetch(tmp, source, None, "even")
        return even, await timed_fetch(tmp, source, SlowEdges(4, SLOW), "uneven")

    return asyncio.run(both())


def parse(header: str) -> tuple[int, int]:
    first, last = header.removeprefix("bytes=").split("-")
    return int(first), int(last) + 1


def ranged(log: list[RequestLog]) -> list[tuple[int, int, int]]:
    """(client port, start, end) of every range request, in order."""
    return [(e.peer, *parse(e.range)) for e in log if e.method == "GET" and e.range]


def test_a_quarter_of_connections_at_a_twentieth_costs_less_than_a_third_more_time(
    runs: tuple[Timed, Timed],
) -> None:
    even, uneven = runs
    print(f"no slow connections: {even.seconds:.2f} s; a quarter at 1/20: {uneven.seconds:.2f} s")
    assert uneven.capped, "no connection was slow: the origin's mode did nothing"
    assert uneven.seconds <= 1.3 * even.seconds, (even.seconds, uneven.seconds)


def test_the_file_is_byte_exact_with_and_without_slow_connections(
    runs: tuple[Timed, Timed], big_files: Path
) -> None:
    even, uneven = runs
    assert file_sha256(even.path) == file_sha256(uneven.path) == file_sha256(big_files / "big.bin")


def test_a_slow_connections_bytes_are_asked_for_again_elsewhere_and_the_slow_one_dropped(
    runs: tuple[Timed, Timed],
) -> None:
    uneven = runs[1]
    requests = ranged(uneven.log)
    moved = 0
    for i, (port, start, end) in enumerate(requests):
        if port not in uneven.capped or [p for p, _, _ in requests].count(port) != 1:
            continue
        sent = uneven.sent.get(port, 0)
        later = [(s, e) for p, s, e in requests[i + 1 :] if p != port and start <= s < end]
        # Bytes this slow connection had already sent, asked for again on another one: a
        # re-request (work stealing only ever takes bytes not yet received).
        if not any(s < start + sent for s, _ in later):
            continue
        moved += 1
        # The rest of its range went to fresh connections, up to the very end it asked for,
        # and the slow one stopped short of it: dropped, its connection closed.
        assert max(e for _, e in later) == end
        assert sent < end - start, f"port {port} sent all it was asked for"
    assert moved >= 1, f"no slow connection's bytes were asked for again: {requests}"


# --- kill -9 after a move -----------------------------------------------------------------


def ledger_chunks(ledger: Path) -> list[ChunkRecord]:
    """The chunks as any other SQLite reader sees them."""
    if not ledger.exists():
        return []
    with closing(sqlite3.connect(ledger, timeout=30)) as db:
        try:
            rows = db.execute(
                'SELECT file_id, start, "end", done, xxh3 FROM chunks ORDER BY start'
            ).fetchall()
        except sqlite3.OperationalError:  # the child has not created its tables yet
            return []
    return [ChunkRecord(f, s, e, d, bytes(x or b"")) for f, s, e, d, x in rows]


async def test_chunks_stay_consistent_through_a_sigkill_after_a_slow_range_moved(
    tmp_path: Path, big_files: Path
) -> None:
    source = big_files / "big.bin"
    size = source.stat().st_size
    ledger, dest = tmp_path / "ledger.db", tmp_path / "out" / "big.bin"
    digest = file_sha256(source)
    edges = SlowEdges(4, 256 * 1024)
    helper = [PYTHON, "-m", "downloader.testing.fetch", str(ledger)]
    async with Origin({"big.bin": source}, throttle=4 * MiB, slow=edges) as origin:
        args = [origin.url("big.bin"), str(dest), "8", digest, "--slow-seconds", "1"]
        child = await asyncio.create_subprocess_exec(
            *helper, *args, stdout=asyncio.subprocess.PIPE, env=python_env()
        )
        # Wait for a range moved off a slow connection and for a checkpoint that records
        # the cut (a chunk starting where the new request starts), then kill.
        async with asyncio.timeout(60):
            while True:
                assert child.returncode is None, "the child ended before a range moved"
                requests = ranged(origin.log)
                cuts = {
                    s
                    for i, (port, a, b) in enumerate(requests)
                    if port in edges.capped
                    for p, s, _ in requests[i + 1 :]
                    if p != port and a < s < b
                }
                starts = {c.start for c in await asyncio.to_thread(ledger_chunks, ledger)}
                if cuts & starts:
                    break
                await asyncio.sleep(0.05)
        child.send_signal(signal.SIGKILL)
        await child.wait()

        chunks = await asyncio.to_thread(ledger_chunks, ledger)
        Plan.from_chunks(size, MiB, chunks, 2 * MiB)  # raises unless they tile the file
        assert 0 < sum(c.done for c in chunks) < size
        part = await PartFile.open(dest.with_name("big.bin.part"), size)
        try:
            for c in chunks:  # what the ledger says is done is on disk, digest for digest
                assert await part.check_blocks(c.start, c.done, MiB, c.xxh3) == [], c.start
        finally:
            await part.close()

        child = await asyncio.create_subprocess_exec(
            *helper, *args, stdout=asyncio.subprocess.PIPE, env=python_env()
        )
        async with asyncio.timeout(120):
            out, _ = await child.communicate()
    assert child.returncode == 0
    last = out.decode().strip().splitlines()[-1]
    assert last.split()[1] == digest == file_sha256(dest)
    assert int(last.split("checked=")[1].split()[0]) > 0  # the unclean stop was noticed
