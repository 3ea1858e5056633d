"""Peers, the serving side (issue 18): the real ``modelhaul serve`` offers a finished file by
its SHA-256 (``/api/v1/blobs/sha256/{hex}``) with ranges, only while the file is what the
content index says, under the same token as every route; ``modelhaul peers`` shows who
answers and what they hold."""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
from clikit import run, start
from serverkit import free_port

from downloader.settings import MiB
from downloader.testing.modelfiles import gguf_bytes
from downloader.testing.origin import Origin

DATA = gguf_bytes(size=3 * MiB + 123, seed=18)  # named .gguf, so it must be one
SHA = hashlib.sha256(DATA).hexdigest()
OTHER = "b" * 64
TOKEN = "peer-s3cret"


@dataclass
class Served:
    url: str  # the server's base URL
    home: Path
    file: Path  # the finished, indexed file it serves

    @property
    def blob(self) -> str:
        return f"{self.url}/api/v1/blobs/sha256/{SHA}"


async def _indexed_home(tmp_path: Path, data: bytes = DATA) -> tuple[Path, Path]:
    """A home whose ledger has one finished file with a known SHA-256 (so, indexed)."""
    home, dest = tmp_path / "home", tmp_path / "files"
    sha = hashlib.sha256(data).hexdigest()
    async with Origin({"model.gguf": data}) as origin:
        got = await run(
            home, "get", "-q", origin.url("model.gguf"), "--checksum", f"sha256={sha}",
            "--dest", str(dest),
        )  # fmt: skip
    assert got.code == 0, got.stderr
    return home, dest / "model.gguf"


async def _until_up(url: str, proc: asyncio.subprocess.Process, headers: dict) -> None:
    async with aiohttp.ClientSession() as http, asyncio.timeout(30):
        while True:
            assert proc.returncode is None, await proc.stderr.read()
            try:
                async with http.get(f"{url}/health", headers=headers) as r:
                    if r.status == 200:
                        return
            except aiohttp.ClientConnectionError:
                pass
            await asyncio.sleep(0.1)


@asynccontextmanager
async def _serve(home: Path, *args: str) -> AsyncIterator[str]:
    port = free_port()
    proc = await start(home, "serve", "--port", str(port), *args)
    url = f"http://127.0.0.1:{port}"
    try:
        token = args[args.index("--token") + 1] if "--token" in args else None
        await _until_up(url, proc, {"Authorization": f"Bearer {token}"} if token else {})
        yield url
    finally:
        proc.terminate()
        _, err = await proc.communicate()
    # A 500 is logged with its traceback: none may have happened, even unnoticed.
    assert b"unexpected error in a request" not in err, err.decode()[-3000:]


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[Served]:
    home, file = await _indexed_home(tmp_path)
    async with _serve(home) as url:
        yield Served(url, home, file)


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(auto_decompress=False) as session:
        yield session


def _no_path_in(headers, *paths: Path) -> None:
    for value in headers.values():
        assert all(str(p) not in value and p.name not in value for p in paths), value


async def test_a_finished_file_is_served_byte_exact_by_its_sha256(served, http) -> None:
    async with http.get(served.blob) as r:
        body = await r.read()
        assert r.status == 200
        assert r.headers["Content-Type"] == "application/octet-stream"
        assert r.headers["X-Content-Sha256"] == SHA
        assert r.headers["ETag"] == f'"sha256:{SHA}"'
        assert r.headers["Accept-Ranges"] == "bytes"
        _no_path_in(r.headers, served.file, served.home)
    assert body == DATA


async def test_one_byte_range_is_served_as_206_with_its_content_range(served, http) -> None:
    async with http.get(served.blob, headers={"Range": "bytes=1000-1999"}) as r:
        assert r.status == 206
        assert r.headers["Content-Range"] == f"bytes 1000-1999/{len(DATA)}"
        assert await r.read() == DATA[1000:2000]
    async with http.get(served.blob, headers={"Range": "bytes=-100"}) as r:
        assert r.status == 206 and await r.read() == DATA[-100:]
    async with http.get(served.blob, headers={"Range": f"bytes={len(DATA) - 5}-"}) as r:
        assert r.status == 206 and await r.read() == DATA[-5:]


async def test_head_gives_the_length_and_etag_without_the_bytes(served, http) -> None:
    async with http.head(served.blob) as r:
        assert r.status == 200
        assert int(r.headers["Content-Length"]) == len(DATA)
        assert r.headers["ETag"] == f'"sha256:{SHA}"'
        assert await r.read() == b""


async def test_if_range_with_its_etag_gives_the_range_and_another_the_whole_file(
    served, http
) -> None:
    wanted = {"Range": "bytes=10-19"}
    async with http.get(served.blob, headers={**wanted, "If-Range": f'"sha256:{SHA}"'}) as r:
        assert r.status == 206 and await r.read() == DATA[10:20]
    for other in ('"sha256:' + OTHER + '"', f'W/"sha256:{SHA}"', "Wed, 21 Oct 2015 07:28:00 GMT"):
        async with http.get(served.blob, headers={**wanted, "If-Range": other}) as r:
            assert r.status == 200 and await r.read() == DATA, other


async def test_a_range_past_the_end_is_416_with_the_size(served, http) -> None:
    async with http.get(served.blob, headers={"Range": f"bytes={len(DATA)}-"}) as r:
        assert r.status == 416
        assert r.headers["Content-Range"] == f"bytes */{len(DATA)}"
        assert (await r.json())["code"] == "RANGE_NOT_SATISFIABLE"


async def test_a_client_hanging_up_mid_file_is_no_error_and_the_server_goes_on(
    tmp_path, http
) -> None:
    big = gguf_bytes(size=64 * MiB, seed=19)  # far more than the socket buffers hold
    home, _ = await _indexed_home(tmp_path, big)
    digest = hashlib.sha256(big).hexdigest()
    async with _serve(home) as url:  # on leaving: no "unexpected error" in its log
        port = int(url.rsplit(":", 1)[1])
        for _ in range(3):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(
                f"GET /api/v1/blobs/sha256/{digest} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()
            )
            assert (await reader.readexactly(64 * 1024)).startswith(b"HTTP/1.1 200")
            writer.transport.abort()  # hang up with most of the file unsent
        async with http.get(f"{url}/api/v1/blobs/sha256/{digest}") as r:
            assert r.status == 200 and await r.read() == big


async def test_an_unknown_digest_is_404(served, http) -> None:
    async with http.get(f"{served.url}/api/v1/blobs/sha256/{OTHER}") as r:
        error = await r.json()
        assert r.status == 404 and error["code"] == "BLOB_NOT_FOUND"
        assert str(served.file) not in error["message"]


async def test_a_file_changed_after_indexing_is_404_not_its_new_bytes(served, http) -> None:
    stat = served.file.stat()
    with served.file.open("r+b") as f:  # same size, other bytes: only the mtime tells
        f.write(b"X" * 16)
    os.utime(served.file, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    for _ in range(2):  # the stale entry is dropped, and stays gone
        async with http.get(served.blob) as r:
            assert r.status == 404 and (await r.json())["code"] == "BLOB_NOT_FOUND"


async def test_a_file_grown_after_indexing_is_404(served, http) -> None:
    with served.file.open("ab") as f:
        f.write(b"more")
    async with http.head(served.blob) as r:
        assert r.status == 404


async def test_a_file_replaced_by_a_symlink_is_404(served, http, tmp_path) -> None:
    # The link points at the very same bytes with the same times: only being a link counts.
    copy = tmp_path / "elsewhere.gguf"
    os.replace(served.file, copy)
    served.file.symlink_to(copy)
    async with http.get(served.blob) as r:
        assert r.status == 404 and (await r.json())["code"] == "BLOB_NOT_FOUND"


async def test_a_token_is_needed_by_header_or_query_when_serve_has_one(tmp_path, http) -> None:
    home, _ = await _indexed_home(tmp_path)
    async with _serve(home, "--token", TOKEN) as url:
        blob = f"{url}/api/v1/blobs/sha256/{SHA}"
        for headers in ({}, {"Authorization": "Bearer wrong"}):
            async with http.get(blob, headers=headers) as r:
                assert r.status == 401 and (await r.json())["code"] == "UNAUTHORIZED"
        async with http.get(blob, headers={"Authorization": f"Bearer {TOKEN}"}) as r:
            assert r.status == 200 and await r.read() == DATA
        async with http.get(blob, params={"access_token": TOKEN}) as r:
            assert r.status == 200 and await r.read() == DATA
        got = await run(tmp_path / "b", "peers", "--json", "--peer", url, "--digest", SHA)
        assert got.code == 1 and "401" in got.json()[0]["error"]
        port = url.rsplit(":", 1)[1]
        with_token = f"http://{TOKEN}@127.0.0.1:{port}"
        got = await run(tmp_path / "b", "peers", "--json", "--peer", with_token, "--digest", SHA)
        assert got.code == 0, got.stderr
        assert [h["sha256"] for h in got.json()[0]["held"]] == [SHA]
        assert TOKEN not in got.stdout


async def test_the_peer_token_opens_blobs_and_health_only(tmp_path, http) -> None:
    home, _ = await _indexed_home(tmp_path)
    async with _serve(home, "--token", TOKEN, "--peer-token", "p33r") as url:
        peer = {"Authorization": "Bearer p33r"}
        async with http.get(f"{url}/api/v1/blobs/sha256/{SHA}", headers=peer) as r:
            assert r.status == 200 and await r.read() == DATA
        async with http.head(f"{url}/api/v1/blobs/sha256/{SHA}", headers=peer) as r:
            assert r.status == 200
        async with http.get(f"{url}/health", headers=peer) as r:
            assert r.status == 200
        for method, path in (
            ("GET", "/api/v1/downloads"),
            ("POST", "/api/v1/downloads"),
            ("DELETE", "/api/v1/downloads/1"),
            ("PUT", "/api/v1/limits"),
            ("GET", "/api/v1/events"),
            ("POST", f"/api/v1/blobs/sha256/{SHA}"),
        ):
            headers = {**peer, "Content-Type": "application/json"}
            async with http.request(method, f"{url}{path}", headers=headers, data=b"{}") as r:
                assert r.status in (401, 405), (method, path, r.status)
                if r.status == 405:  # no such method there: refused before the token
                    continue
                assert (await r.json())["code"] == "UNAUTHORIZED", (method, path)
        port = url.rsplit(":", 1)[1]
        got = await run(
            tmp_path / "b", "peers", "--json", "--peer", f"http://p33r@127.0.0.1:{port}",
            "--digest", SHA,
        )  # fmt: skip
        assert got.code == 0, got.stderr
        assert [h["sha256"] for h in got.json()[0]["held"]] == [SHA]


async def test_peers_shows_the_server_holds_a_digest_this_machine_indexed(served) -> None:
    got = await run(served.home, "peers", "--peer", served.url, NO_COLOR="1", COLUMNS="200")
    assert got.code == 0, got.stderr
    assert f"{served.url}  answers in" in got.stdout
    assert "holds 1 of 1 digests" in got.stdout
    [row] = [line for line in got.stdout.splitlines() if SHA[:12] in line]
    assert "model.gguf" in row and "3.1 MB" in row


async def test_peers_shows_a_dead_peer_as_not_answering(served, tmp_path) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    got = await run(tmp_path / "b", "peers", "--peer", dead, "--peer", served.url,
                    "--digest", SHA, NO_COLOR="1", COLUMNS="200")  # fmt: skip
    assert got.code == 0, got.stderr
    assert f"{dead}  does not answer: cannot connect: Connection refused" in got.stdout
    assert "1 of 2 peers answer" in got.stdout
    alone = await run(tmp_path / "b", "peers", "--peer", dead, "--digest", SHA)
    assert alone.code == 1 and "Traceback" not in alone.stderr + alone.stdout


async def test_peers_json_lists_each_peer_and_what_it_holds(served, tmp_path) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    got = await run(
        tmp_path / "b", "peers", "--json", "--peer", served.url, "--peer", dead,
        "--digest", SHA, "--digest", OTHER,
    )  # fmt: skip
    assert got.code == 0, got.stderr
    live, down = got.json()
    assert live["peer"] == served.url and live["answers"] is True
    assert live["asked"] == 2 and live["error"] is None
    assert isinstance(live["latency_ms"], float) and live["version"]
    assert live["held"] == [{"sha256": SHA, "size": len(DATA), "local": []}]
    assert down["peer"] == dead and down["answers"] is False and down["held"] == []
    assert "cannot connect" in down["error"]


async def test_peers_asks_for_what_the_ledger_wants_through_modelhaul_peers_env(served) -> None:
    got = await run(served.home, "peers", "--json", MODELHAUL_PEERS=served.url)
    assert got.code == 0, got.stderr
    [report] = got.json()
    assert report["held"] == [{"sha256": SHA, "size": len(DATA), "local": ["model.gguf"]}]


async def test_peers_without_any_peer_is_a_usage_error(tmp_path) -> None:
    got = await run(tmp_path / "home", "peers")
    assert got.code == 2 and "no peers to ask" in got.stderr
    assert len(got.stderr.strip().splitlines()) == 1
