"""Peers: two modelhaul homes on one machine, A serving (`modelhaul serve`, a real process)
what it has downloaded, B downloading the same file with `--peer A`. B takes its bytes from
A and only what A cannot give from the origin; A serving a corrupted range cannot corrupt
B, and only A's ranges are fetched again from the origin; A down, B goes to the origin at
once. The origin's byte counters say who served what."""

from __future__ import annotations

import asyncio
import hashlib
import os
import random
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import pytest
from clikit import run as cli
from clikit import start as start_cli
from conftest import python_env
from serverkit import free_port

from downloader.settings import MiB
from downloader.testing.origin import Origin

pytestmark = pytest.mark.slow
MODELHAUL = str(Path(sys.executable).parent / "modelhaul")
SIZE = 48 * MiB + 4321
DATA = random.Random(1818).randbytes(SIZE)
SHA = hashlib.sha256(DATA).hexdigest()


@asynccontextmanager
async def serving(home: Path, *args: str) -> AsyncIterator[str]:
    """`modelhaul serve` for ``home`` in its own process; yields its base URL."""
    port = free_port()
    server = subprocess.Popen(
        [MODELHAUL, "serve", "--port", str(port), *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=python_env(MODELHAUL_HOME=str(home)),
    )
    base = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as http, asyncio.timeout(20):
            while True:
                try:
                    async with http.get(f"{base}/health") as r:
                        if r.status in (200, 401):  # up (401: it wants its token)
                            break
                except aiohttp.ClientConnectionError:
                    await asyncio.sleep(0.1)
        yield base
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


async def fetched_by_a(tmp_path: Path, origin: Origin) -> Path:
    """Home A downloads the file with its digest (so it is in A's content index)."""
    home = tmp_path / "a"
    result = await cli(
        home,
        "get",
        origin.url("model.bin"),
        "--checksum",
        f"sha256={SHA}",
        "-o",
        str(tmp_path / "a-files" / "model.bin"),
    )
    assert result.code == 0, result.stderr
    return tmp_path / "a-files" / "model.bin"


async def get_b(tmp_path: Path, origin: Origin, *peers: str, token: str = "") -> str:
    """Home B downloads the same file with ``peers``; returns its history."""
    home = tmp_path / "b"
    dest = tmp_path / "b-files" / "model.bin"
    args = [a for p in peers for a in ("--peer", p)]
    result = await cli(
        home, "get", origin.url("model.bin"), "--checksum", f"sha256={SHA}",
        "-o", str(dest), *args,
    )  # fmt: skip
    assert result.code == 0, result.stderr
    assert hashlib.sha256(dest.read_bytes()).hexdigest() == SHA
    shown = await cli(home, "show", "1", "--json")
    assert shown.code == 0, shown.stderr
    return "\n".join(e["reason"] for e in shown.json()["events"])


async def test_b_takes_the_file_from_peer_a(tmp_path: Path) -> None:
    async with Origin({"model.bin": DATA}) as origin:
        await fetched_by_a(tmp_path, origin)
        # B holds only the peer token: it can read A's blobs, not control A.
        async with serving(tmp_path / "a", "--token", "admin", "--peer-token", "s3cret") as a:
            before = origin.served_by_file["model.bin"]
            token_url = a.replace("http://", "http://s3cret@")
            history = await get_b(tmp_path, origin, token_url)
            from_origin = origin.served_by_file["model.bin"] - before
    print(f"origin served {from_origin} of {SIZE} bytes to B; history:\n{history}")
    assert from_origin <= SIZE * 0.05, from_origin
    assert f"bytes from {a}/api/v1/blobs/sha256/{SHA}" in history
    assert "s3cret" not in history


async def test_a_peer_serving_a_corrupted_range_is_dropped_and_only_its_ranges_refetched(
    tmp_path: Path,
) -> None:
    async with Origin({"model.bin": DATA}) as origin:
        kept = await fetched_by_a(tmp_path, origin)
        # A's copy rots in place (same size, same mtime: A's index still vouches for it).
        st = kept.stat()
        with kept.open("r+b") as f:
            f.seek(20 * MiB + 5)
            f.write(b"\0" * 4096)
        os.utime(kept, ns=(st.st_atime_ns, st.st_mtime_ns))
        async with serving(tmp_path / "a") as a:
            before = origin.served_by_file["model.bin"]
            history = await get_b(tmp_path, origin, a)
            from_origin = origin.served_by_file["model.bin"] - before
    print(f"origin served {from_origin} of {SIZE} bytes to B; history:\n{history}")
    blob = f"{a}/api/v1/blobs/sha256/{SHA}"
    assert f"mirror {blob} dropped" in history, history
    # What A served was fetched again from the origin, once: at most the file (and the
    # probe), never the file per suspect.
    assert from_origin <= SIZE + MiB, from_origin
    assert f"{SIZE:,} bytes from {origin.url('model.bin')}" in history


async def test_with_peer_a_down_b_goes_to_the_origin_at_once(tmp_path: Path) -> None:
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    async with Origin({"model.bin": DATA}) as origin:
        history = await get_b(tmp_path, origin, dead)
        assert origin.served_by_file["model.bin"] >= SIZE
    assert f"mirror {dead}/api/v1/blobs/sha256/{SHA} not used for this file" in history
    assert "dropped" not in history


async def test_after_a_kill_a_corrupt_peer_costs_the_origin_only_the_peers_ranges(
    tmp_path: Path,
) -> None:
    """B fetched part of the file from the origin and was killed; it goes on with peer A,
    whose copy is corrupt. The origin then serves A's ranges again, and nothing it had
    served before: the ledger says which bytes were whose."""
    async with Origin({"model.bin": DATA}) as origin:
        kept = await fetched_by_a(tmp_path, origin)
        st = kept.stat()
        with kept.open("r+b") as f:
            f.seek(SIZE - 3 * MiB)
            f.write(b"\0" * 4096)
        os.utime(kept, ns=(st.st_atime_ns, st.st_mtime_ns))
        home, dest = tmp_path / "b", tmp_path / "b-files" / "model.bin"
        get = [origin.url("model.bin"), "--checksum", f"sha256={SHA}", "-o", str(dest)]
        origin.throttle = 4 * MiB
        start = origin.served_by_file["model.bin"]
        first = await start_cli(home, "get", *get, "--connections", "2")
        while origin.served_by_file["model.bin"] - start < 16 * MiB:
            assert first.returncode is None, await first.stderr.read()
            await asyncio.sleep(0.05)
        first.kill()
        await first.wait()
        origin.throttle = None
        shown = await cli(home, "show", "1", "--json")
        durable = shown.json()["downloaded_bytes"]
        assert 0 < durable < SIZE, durable
        async with serving(tmp_path / "a") as a:
            before = origin.served_by_file["model.bin"]
            result = await cli(home, "get", *get, "--peer", a)
            again = origin.served_by_file["model.bin"] - before
        assert result.code == 0, result.stderr
    assert hashlib.sha256(dest.read_bytes()).hexdigest() == SHA
    shown = await cli(home, "show", "1", "--json")
    history = "\n".join(e["reason"] for e in shown.json()["events"])
    print(f"durable before the peer: {durable}; origin served {again} after; {history}")
    assert f"mirror {a}/api/v1/blobs/sha256/{SHA} dropped" in history, history
    # A's share (what was not durable) and the blocks the kill cost, never B's own.
    assert again <= SIZE - durable + 2 * MiB, (again, SIZE - durable)
