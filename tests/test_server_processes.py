"""The server in its own process (the real `modelhaul serve`), controlled from others."""

from __future__ import annotations

import asyncio
import random
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import pytest
from conftest import python_env
from managerkit import control
from serverkit import SSE, free_port

from downloader.settings import MiB
from downloader.testing.origin import Origin

pytestmark = pytest.mark.slow
MODELHAUL = str(Path(sys.executable).parent / "modelhaul")


def start_server(home: Path, port: int, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [MODELHAUL, "serve", "--port", str(port), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=python_env(MODELHAUL_HOME=str(home)),
    )


async def test_a_pause_from_another_process_shows_on_the_server_stream_within_a_second(
    tmp_path: Path,
) -> None:
    home = tmp_path / "home"
    data = random.Random(8).randbytes(24 * MiB)
    port = free_port()
    server = start_server(home, port)
    try:
        assert server.stdout.readline().startswith("modelhaul serving on")
        async with (
            Origin({"m.bin": data}, throttle=MiB) as origin,
            aiohttp.ClientSession(f"http://127.0.0.1:{port}") as http,
        ):
            async with asyncio.timeout(10):  # until it answers
                while True:
                    try:
                        async with http.get("/health") as r:
                            if r.status == 200:
                                break
                    except aiohttp.ClientConnectionError:
                        await asyncio.sleep(0.1)
            async with http.post(
                "/api/v1/downloads", json={"url": origin.url("m.bin"), "connections": 2}
            ) as r:
                task_id = (await r.json())["id"]
            async with http.get(f"/api/v1/downloads/{task_id}/events") as r:
                stream = SSE(r)
                await stream.until(lambda d: (d["downloaded_bytes"] or 0) > 2 * MiB)
                assert await asyncio.to_thread(control, home, "pause", task_id) == "paused"
                paused_at = time.monotonic()
                await stream.until(lambda d: d["state"] == "paused", timeout=5)
                assert time.monotonic() - paused_at < 1.0
            async with http.post(f"/api/v1/downloads/{task_id}/resume") as r:
                assert r.status == 200
            async with http.get(f"/api/v1/downloads/{task_id}/events") as r:
                done = await SSE(r).until(
                    lambda d: d["status"] in ("complete", "error"), timeout=60
                )
            assert done[-1][1]["status"] == "complete"
        assert (home / "downloads" / "m.bin").read_bytes() == data
    finally:
        server.terminate()
        server.wait(10)


def test_serve_refuses_a_non_loopback_bind_without_a_token(tmp_path: Path) -> None:
    server = start_server(tmp_path / "home", free_port(), "--host", "0.0.0.0")
    _, err = server.communicate(timeout=30)
    assert server.returncode != 0
    assert "refusing to listen on 0.0.0.0 without a token" in err
