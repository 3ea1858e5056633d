"""IPv6 loopback (issue 17): a download from an origin at ``[::1]`` (ranges, a redirect, the
size check, credentials kept to the original host) and ``modelhaul serve --host ::1``, both
through the real ``modelhaul`` program. Skipped where this machine has no ``::1``."""

from __future__ import annotations

import asyncio
import random
import socket
from pathlib import Path

import aiohttp
import pytest
from clikit import run, start

from downloader.settings import MiB
from downloader.testing.origin import Origin


def _ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


pytestmark = pytest.mark.skipif(
    not _ipv6_loopback(), reason="this machine has no IPv6 loopback (binding ::1 failed)"
)
SECRET = "Bearer v6-secret"


def _free_port() -> int:
    with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
        s.bind(("::1", 0))
        return s.getsockname()[1]


@pytest.fixture
def data() -> bytes:
    return random.Random(6).randbytes(9 * MiB + 321)


async def test_a_url_at_ipv6_loopback_downloads_byte_exact_through_ranges_and_a_redirect(
    tmp_path: Path, data: bytes
) -> None:
    async with Origin({"m.bin": data}, host="::1") as origin:
        url = origin.url("m.bin", signed=True)  # /redirect/ → a signed URL on another port
        assert url.startswith("http://[::1]:")
        got = await run(
            tmp_path / "home",
            "get",
            url,
            "-o",
            str(tmp_path / "m.bin"),
            "--connections",
            "4",
            "--header",
            f"Authorization: {SECRET}",
            NO_COLOR="1",
        )
        log = list(origin.log)
    assert got.code == 0, got.stderr
    assert (tmp_path / "m.bin").read_bytes() == data
    ranged = [r for r in log if r.path.startswith("/signed/") and r.status == 206]
    assert len(ranged) > 1, "the file did not come in ranges"
    to_origin = [r for r in log if r.path.startswith("/redirect/")]
    to_cdn = [r for r in log if r.path.startswith("/signed/")]
    # [::1]:A and [::1]:B are two origins: the credential stays with the one it was given for
    assert to_origin and all(r.headers.get("Authorization") == SECRET for r in to_origin)
    assert to_cdn and all("Authorization" not in r.headers for r in to_cdn)


@pytest.mark.parametrize("host", ["::1", "[::1]"])  # as a socket and as a URL write it
async def test_serve_on_ipv6_loopback_answers_health_and_runs_a_queued_download(
    tmp_path: Path, data: bytes, host: str
) -> None:
    port = _free_port()
    app = "http://[::1]:5173"  # a page on another port of the same address
    server = await start(
        tmp_path / "home", "serve", "--host", host, "--port", str(port), "--cors-origin", app
    )
    base = f"http://[::1]:{port}"
    try:
        async with asyncio.timeout(20):
            line = (await server.stdout.readline()).decode()
        assert line.strip() == f"modelhaul serving on {base}/"  # the address in brackets
        async with (
            Origin({"m.bin": data}, host="::1", throttle=8 * MiB) as origin,
            aiohttp.ClientSession(base) as http,
        ):
            async with http.get("/health") as r:  # Host: [::1]:port
                assert r.status == 200 and (await r.json())["status"] == "ok"
            own = {"Origin": base, "Sec-Fetch-Site": "same-origin"}  # its own page's calls
            body = {"url": origin.url("m.bin"), "dest": "v6/m.bin"}
            async with http.post("/api/v1/downloads", json=body, headers=own) as r:
                assert r.status == 202, await r.text()
                task_id = (await r.json())["id"]
            async with asyncio.timeout(60):
                while True:
                    async with http.get(f"/api/v1/downloads/{task_id}") as r:
                        state = (await r.json())["state"]
                    if state in ("completed", "failed", "cancelled"):
                        break
                    await asyncio.sleep(0.1)
            assert state == "completed"
            preflight = {
                "Origin": app,
                "Access-Control-Request-Method": "DELETE",
                "Sec-Fetch-Site": "same-site",
            }
            async with http.options(f"/api/v1/downloads/{task_id}", headers=preflight) as r:
                assert r.status == 204 and r.headers["Access-Control-Allow-Origin"] == app
            # the guard still holds: another port of [::1] that is not listed, a foreign Host
            async with http.get("/api/v1/downloads", headers={"Origin": "http://[::1]:1"}) as r:
                assert r.status == 403 and "Access-Control-Allow-Origin" not in r.headers
            async with http.get("/health", headers={"Host": f"evil.example:{port}"}) as r:
                assert r.status == 403
        assert (tmp_path / "home" / "downloads" / "v6" / "m.bin").read_bytes() == data
    finally:
        server.terminate()
        await server.wait()
