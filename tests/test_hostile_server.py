"""The server against hostile requests (issue 14): other web sites, rebinding names, and
every input that used to reach a 500. Each attack gets its status, its JSON code and
message, and leaves the ledger as it was; legitimate requests still work."""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
import yarl
from managerkit import manager_settings
from serverkit import SSE, running_server

from downloader.manager import DownloadManager
from downloader.server.context import MANAGER
from downloader.settings import MiB
from downloader.testing.origin import Origin

EVIL = "https://evil.example"
JSON = {"Content-Type": "application/json"}


def _body(fields: dict) -> bytes:
    return json.dumps(fields).encode()


@dataclass
class Server:
    url: str
    http: aiohttp.ClientSession
    manager: DownloadManager

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    @property
    def origin(self) -> str:
        return self.url

    async def ledger(self) -> dict[int, tuple[str, int]]:
        """Every task's state and the length of its history: what an attack must not touch."""
        tasks = await self.manager.list(limit=1000)
        return {t.id: (t.state.value, len(await self.manager.history(t.id))) for t in tasks}

    async def call(
        self,
        method: str,
        path: str,
        *,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, dict]:
        """One request (no automatic Content-Type); the status and the JSON body."""
        async with self.http.request(
            method,
            path,
            data=body,
            headers=headers or {},
            skip_auto_headers=["Content-Type"],
        ) as r:
            assert r.content_type == "application/json", (r.status, await r.text())
            return r.status, await r.json()

    async def raw(self, request: bytes) -> tuple[int, bytes]:
        """A request written byte for byte (headers no client would send)."""
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        try:
            writer.write(request)
            await writer.drain()
            response = await asyncio.wait_for(reader.read(), 10)
        finally:
            writer.close()
        head, _, body = response.partition(b"\r\n\r\n")
        return int(head.split()[1]), body


def _settings(tmp_path: Path):
    # Nothing here may reach the internet: the Hub "endpoint" is a closed local port.
    return manager_settings(
        tmp_path / "home", downloads=tmp_path / "root", hf_endpoint="http://127.0.0.1:9"
    )


@pytest.fixture
async def server(tmp_path: Path):
    async with (
        running_server(_settings(tmp_path), heartbeat=0.3) as (url, app),
        aiohttp.ClientSession(url) as http,
    ):
        yield Server(url, http, app[MANAGER])


@pytest.fixture
async def slow():
    """An origin slow enough that a download stays in progress for the whole test."""
    data = random.Random(14).randbytes(4 * MiB)
    async with Origin({"slow.bin": data, "other.bin": data}, throttle=32 * 1024) as origin:
        yield origin


async def _state(server: Server, task_id: int, *states: str) -> None:
    async with asyncio.timeout(30):
        while (await server.manager.get(task_id)).state.value not in states:
            await asyncio.sleep(0.05)


@pytest.fixture
async def tasks(server: Server, slow: Origin):
    """Two downloads, one in progress and one paused (through the API, as a user would);
    cancelled afterwards, so that the slow origin has no response left to finish."""
    ids = {}
    for name, file in (("downloading", "slow.bin"), ("paused", "other.bin")):
        status, body = await server.call(
            "POST",
            "/api/v1/downloads",
            body=json.dumps({"url": slow.url(file), "dest": file}).encode(),
            headers=JSON,
        )
        assert status == 202, body
        ids[name] = body["id"]
        await _state(server, body["id"], "downloading")
    status, body = await server.call("POST", f"/api/v1/downloads/{ids['paused']}/pause")
    assert status == 200 and body["state"] == "paused"
    yield ids
    for task in await server.manager.list(limit=1000):
        if task.state.value in ("pending", "downloading", "paused"):
            await server.manager.cancel(task.id)
    for task in await server.manager.list(limit=1000):
        await _state(server, task.id, "cancelled", "completed", "failed")


def _routes(ids: dict[str, int], body: bytes) -> list[tuple[str, str, bytes | None]]:
    down, paused = ids["downloading"], ids["paused"]
    return [
        ("POST", f"/api/v1/downloads/{down}/pause", None),
        ("POST", f"/api/v1/downloads/{paused}/resume", None),
        ("POST", f"/api/v1/downloads/{paused}/retry", None),
        ("DELETE", f"/api/v1/downloads/{down}", None),
        ("DELETE", f"/api/v1/downloads/{paused}?purge=true", None),
        ("DELETE", f"/local/download/{down}", None),
        ("POST", "/api/v1/downloads", body),
        ("POST", "/local/download", b'{"repo_id": "org/repo", "filename": "m.gguf"}'),
    ]


_READS = [
    "/api/v1/downloads",
    "/api/v1/downloads/1",
    "/api/v1/events",
    "/api/v1/downloads/1/events",
    "/local/download/status",
    "/downloads",
    "/v1/downloads",
    "/download-progress/1",
    "/health",
    "/api/v1/health",
    "/api/v1/openapi.json",
    "/api/v1/blobs/sha256/" + "a" * 64,
]


# --- closed to other sites ----------------------------------------------------------------


async def test_a_cross_site_text_plain_post_is_415_and_queues_nothing(server, slow) -> None:
    body = json.dumps({"url": slow.url("slow.bin")}).encode()
    for content_type in ("text/plain", "text/plain;charset=UTF-8"):
        status, error = await server.call(
            "POST", "/api/v1/downloads", body=body, headers={"Content-Type": content_type}
        )
        assert status == 415 and error["code"] == "UNSUPPORTED_MEDIA_TYPE"
        assert "must be JSON" in error["message"] and content_type in error["message"]
    # and the same from the other site's page, as a browser sends it: refused for its origin
    status, error = await server.call(
        "POST",
        "/api/v1/downloads",
        body=body,
        headers={"Content-Type": "text/plain", "Origin": EVIL, "Sec-Fetch-Site": "cross-site"},
    )
    assert status == 403 and error["code"] == "CROSS_ORIGIN" and EVIL in error["message"]
    assert await server.ledger() == {}


@pytest.mark.parametrize(
    "content_type",
    [
        None,
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "application/octet-stream",
        "application/jsonx",
        "text/json",
    ],
)
async def test_a_body_that_is_not_declared_json_is_415(server, content_type) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    for path in ("/api/v1/downloads", "/local/download"):
        status, error = await server.call(
            "POST", path, body=b'{"url": "http://127.0.0.1:9/m"}', headers=headers
        )
        assert status == 415 and error["code"] == "UNSUPPORTED_MEDIA_TYPE", (path, error)
        shown = repr(content_type) if content_type else "no Content-Type"
        assert shown in error["message"]
    assert await server.ledger() == {}


async def test_a_browser_form_without_a_body_cannot_pause_resume_or_cancel(server, tasks) -> None:
    before = await server.ledger()
    for method, path, _ in _routes(tasks, b"")[:6]:
        for form in ("application/x-www-form-urlencoded", "text/plain", "multipart/form-data"):
            status, error = await server.call(method, path, headers={"Content-Type": form})
            assert status == 415 and error["code"] == "UNSUPPORTED_MEDIA_TYPE", (path, form)
    assert await server.ledger() == before


@pytest.mark.parametrize("origin", [EVIL, "null", "http://127.0.0.1:9", "http://localhost"])
async def test_a_foreign_origin_cannot_pause_resume_retry_cancel_or_queue(
    server, tasks, slow, origin
) -> None:
    before = await server.ledger()
    body = json.dumps({"url": slow.url("slow.bin")}).encode()
    for method, path, data in _routes(tasks, body):
        status, error = await server.call(
            method, path, body=data, headers={**JSON, "Origin": origin}
        )
        assert status == 403 and error["code"] == "CROSS_ORIGIN", (method, path, error)
        assert repr(origin) in error["message"]
    assert await server.ledger() == before


async def test_a_foreign_origin_cannot_read_the_api_or_its_event_streams(server, tasks) -> None:
    before = await server.ledger()
    for path in _READS:
        status, error = await server.call("GET", path, headers={"Origin": EVIL})
        assert status == 403 and error["code"] == "CROSS_ORIGIN", (path, error)
    assert await server.ledger() == before


@pytest.mark.parametrize("site", ["cross-site", "same-site", "CROSS-SITE", "bogus"])
async def test_sec_fetch_site_from_another_site_is_403(server, tasks, site) -> None:
    before = await server.ledger()
    for method, path, data in _routes(tasks, b'{"url": "http://127.0.0.1:9/m"}'):
        status, error = await server.call(
            method, path, body=data, headers={**JSON, "Sec-Fetch-Site": site}
        )
        assert status == 403 and error["code"] == "CROSS_ORIGIN", (path, error)
        assert f"Sec-Fetch-Site: {site.lower()}" in error["message"]
    for path in ("/api/v1/events", "/api/v1/downloads"):
        status, error = await server.call("GET", path, headers={"Sec-Fetch-Site": site})
        assert status == 403 and error["code"] == "CROSS_ORIGIN"
    assert await server.ledger() == before


@pytest.mark.parametrize(
    "host",
    [
        "evil.example",
        "evil.example:{port}",
        "127.0.0.1.evil.example:{port}",
        "localhost.evil.example:{port}",
        "evillocalhost:{port}",
        "192.0.2.1:{port}",
        "[2001:db8::1]:{port}",
    ],
)
async def test_a_rebinding_host_is_403_on_every_route_and_the_page(server, tasks, host) -> None:
    host = host.format(port=server.port)
    before = await server.ledger()
    for method, path, data in [
        ("GET", "/", None),
        ("GET", "/static/app.js", None),
        *[("GET", p, None) for p in _READS],
        *_routes(tasks, b'{"url": "http://127.0.0.1:9/m"}'),
    ]:
        # A rebinding page is same-origin to itself: its Origin matches the Host it sends.
        headers = {**JSON, "Host": host, "Origin": f"http://{host}"}
        status, error = await server.call(method, path, body=data, headers=headers)
        assert status == 403 and error["code"] == "HOST_NOT_ALLOWED", (method, path, error)
        assert "does not answer to Host" in error["message"]
    assert await server.ledger() == before


async def test_a_missing_or_malformed_host_is_400(server) -> None:
    status, body = await server.raw(b"GET /health HTTP/1.0\r\n\r\n")
    assert status == 400 and json.loads(body)["code"] == "MISSING_HOST"
    for host in (b"evil.example:99999", b"a b", b"user@127.0.0.1", b"[::1"):
        status, body = await server.raw(b"GET /health HTTP/1.0\r\nHost: " + host + b"\r\n\r\n")
        assert status == 400 and json.loads(body)["code"] == "INVALID_HOST", host
    status, body = await server.raw(b"GET /health HTTP/1.0\r\nHost: \xff\xfe.example\r\n\r\n")
    assert status == 403 and json.loads(body)["code"] == "HOST_NOT_ALLOWED"


@pytest.mark.parametrize(
    "host", ["localhost", "localhost:{port}", "LocalHost.:{port}", "app.localhost:{port}",
             "127.0.0.1", "127.9.8.7:{port}", "[::1]:{port}"]
)  # fmt: skip
async def test_loopback_names_are_answered_with_any_port(server, host) -> None:
    status, body = await server.call(
        "GET", "/health", headers={"Host": host.format(port=server.port)}
    )
    assert status == 200 and body["status"] == "ok"


async def test_the_configured_host_is_answered_and_others_are_not(tmp_path) -> None:
    async with running_server(_settings(tmp_path), allowed_hosts={"MyBox.lan"}) as (url, app):  # noqa: SIM117
        async with aiohttp.ClientSession(url) as http:
            server = Server(url, http, app[MANAGER])
            origin = f"http://mybox.lan:{server.port}"
            headers = {**JSON, "Host": f"mybox.lan:{server.port}", "Origin": origin}
            status, body = await server.call(
                "POST",
                "/api/v1/downloads",
                body=b'{"url": "http://127.0.0.1:9/m"}',
                headers=headers,
            )
            assert status == 202, body
            status, error = await server.call("GET", "/health", headers={"Host": "other.lan"})
            assert status == 403 and error["code"] == "HOST_NOT_ALLOWED"
            # an IP is no rebinding, but only a wildcard bind answers to any
            status, error = await server.call("GET", "/health", headers={"Host": "192.0.2.7"})
            assert status == 403


async def test_an_ipv6_host_is_one_host_however_it_is_written(tmp_path) -> None:
    async with running_server(_settings(tmp_path), allowed_hosts={"2001:DB8::5"}) as (url, app):  # noqa: SIM117
        async with aiohttp.ClientSession(url) as http:
            server = Server(url, http, app[MANAGER])
            for host in ("[2001:db8::5]:8000", "[2001:0db8:0:0::5]", "[::1]:1", "[0:0::1]:80"):
                status, _ = await server.call("GET", "/health", headers={"Host": host})
                assert status == 200, host
            # its own page at [0:0::0:1] is the same origin as [::1]
            own = {"Host": f"[::1]:{server.port}", "Origin": f"http://[0::1]:{server.port}"}
            status, _ = await server.call("GET", "/api/v1/downloads", headers=own)
            assert status == 200
            for host in ("[2001:db8::6]", "[::1%lo]:80", "[fe80::1]", "[::1"):
                status, _ = await server.call("GET", "/health", headers={"Host": host})
                assert status in (400, 403), host


async def test_a_wildcard_bind_answers_any_ip_but_no_unknown_name(tmp_path) -> None:
    async with running_server(_settings(tmp_path), allowed_hosts={"0.0.0.0"}) as (url, app):  # noqa: SIM117
        async with aiohttp.ClientSession(url) as http:
            server = Server(url, http, app[MANAGER])
            for host in ("192.168.1.5:8000", "[2001:db8::5]:8000"):
                status, _ = await server.call("GET", "/health", headers={"Host": host})
                assert status == 200, host
            status, error = await server.call("GET", "/health", headers={"Host": "evil.example"})
            assert status == 403 and error["code"] == "HOST_NOT_ALLOWED"


async def test_same_origin_and_plain_requests_still_work(server, tasks, slow) -> None:
    own = {"Origin": server.origin, "Sec-Fetch-Site": "same-origin"}
    status, body = await server.call(
        "POST", f"/api/v1/downloads/{tasks['downloading']}/pause", headers=own
    )
    assert status == 200 and body["state"] == "paused"
    status, body = await server.call(  # the page's own fetch: JSON type on a body-less POST
        "POST", f"/api/v1/downloads/{tasks['paused']}/resume", headers={**own, **JSON}
    )
    assert status == 200 and body["state"] in ("pending", "downloading")
    status, body = await server.call(
        "POST",
        "/api/v1/downloads",
        body=json.dumps({"url": slow.url("slow.bin"), "dest": "again.bin"}).encode(),
        headers={"Content-Type": "application/json; charset=utf-8", **own},
    )
    assert status == 202 and body["state"] == "pending"
    # localhost is the same server under another name: its own origin there is fine too
    local = {"Host": f"localhost:{server.port}", "Origin": f"http://localhost:{server.port}"}
    status, body = await server.call("DELETE", f"/api/v1/downloads/{body['id']}", headers=local)
    assert status == 200 and body["state"] == "cancelled"
    status, _ = await server.call("GET", "/api/v1/downloads", headers={"Sec-Fetch-Site": "none"})
    assert status == 200
    async with server.http.get("/", headers={"Origin": EVIL, "Sec-Fetch-Site": "cross-site"}) as r:
        assert r.status == 200  # a link to the page from elsewhere still opens it
        assert r.headers["X-Frame-Options"] == "DENY"  # but no other site may frame it
        assert "frame-ancestors 'none'" in r.headers["Content-Security-Policy"]


async def test_allowed_origins_admit_that_site_only(tmp_path) -> None:
    settings = _settings(tmp_path)
    async with running_server(settings, allowed_origins={"https://app.example"}) as (url, app):  # noqa: SIM117
        async with aiohttp.ClientSession(url) as http:
            server = Server(url, http, app[MANAGER])
            site = {"Origin": "https://app.example", "Sec-Fetch-Site": "cross-site"}
            status, _ = await server.call("GET", "/api/v1/downloads", headers=site)
            assert status == 200
            status, error = await server.call(
                "GET", "/api/v1/downloads", headers={**site, "Origin": "https://app.example:8443"}
            )
            assert status == 403 and error["code"] == "CROSS_ORIGIN"


async def test_health_shows_no_paths(server, tmp_path) -> None:
    for path in ("/health", "/api/v1/health"):
        async with server.http.get(path) as r:
            text = await r.text()
        body = json.loads(text)
        assert r.status == 200 and body["status"] == "ok" and "downloads" in body
        assert "ledger" not in body
        assert str(tmp_path) not in text and "/home" not in text and ".db" not in text


# --- no 500 reachable ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "status", "code", "field", "says"),
    [
        (b'{"a":' * 5000, 400, "INVALID_JSON", None, "nested more than 32 levels"),
        (b"[" * 5000, 400, "INVALID_JSON", None, "nested more than 32 levels"),
        (b'{"a":' * 40 + b"1" + b"}" * 40, 400, "INVALID_JSON", None, "nested more than 32"),
        (b'{"url": "http://[::1"}', 422, "INVALID_FIELD", "url", "Invalid IPv6 URL"),
        (b'{"url": "http://e:99999/m"}', 422, "INVALID_FIELD", "url", "not a valid URL"),
        (
            _body({"url": "http://e/m", "dest": "a" * 300}),
            422,
            "INVALID_FIELD",
            "dest",
            "segment longer than 255 bytes",
        ),
        (
            _body({"url": "http://e/m", "dest": "a/" * 3000}),
            422,
            "INVALID_FIELD",
            "dest",
            "longer than 4000 bytes",
        ),
        (
            _body({"url": "http://e/m", "dest": "a/../../x"}),
            422,
            "INVALID_FIELD",
            "dest",
            "'..'",
        ),
        (
            _body({"url": "http://e/m", "dest": "a\\..\\x"}),
            422,
            "INVALID_FIELD",
            "dest",
            "backslash",
        ),
        (
            _body({"provider": "hf", "model": "org/repo", "filename": "../../x"}),
            422,
            "INVALID_FIELD",
            "filename",
            "'..'",
        ),
        (
            _body({"provider": "hf", "model": "o/r", "allow_patterns": ["*.gguf", "/x"]}),
            422,
            "INVALID_FIELD",
            "allow_patterns",
            "absolute",
        ),
        (
            _body({"provider": "hf", "model": "o/r", "revision": "main\u0000"}),
            422,
            "INVALID_FIELD",
            "revision",
            "control characters",
        ),
        (
            _body({"provider": "hf", "model": "o/r", "base_url": "http://[::1"}),
            422,
            "INVALID_FIELD",
            "base_url",
            "Invalid IPv6 URL",
        ),
        (
            _body({"url": "http://e/m", "via": "ssh"}),
            422,
            "INVALID_FIELD",
            "via",
            "only with provider",
        ),
        (
            _body({"provider": "ollama", "model": "llama3", "via": "ssh"}),
            422,
            "INVALID_FIELD",
            "via",
            "daemon, registry",
        ),
        (
            _body({"provider": "ollama", "model": "llama3", "insecure": "yes"}),
            422,
            "INVALID_FIELD",
            "insecure",
            "true or false",
        ),
        (
            _body({"url": "http://e/m", "mirrors": "http://f/m"}),
            422,
            "INVALID_FIELD",
            "mirrors",
            "list of URLs",
        ),
        (
            _body({"url": "http://e/m", "mirrors": ["file:///etc/passwd"]}),
            422,
            "INVALID_FIELD",
            "mirrors",
            "only http:// and https://",
        ),
        (
            _body({"url": "http://e/m", "mirrors": [f"http://f/{i}" for i in range(17)]}),
            422,
            "INVALID_FIELD",
            "mirrors",
            "at most 16",
        ),
        (
            _body({"provider": "hf", "model": "o/r", "mirrors": ["http://f/m"]}),
            422,
            "INVALID_FIELD",
            "mirrors",
            "only to one URL",
        ),
        (
            _body({"url": "http://e/m", "peers": "http://p:8000"}),
            422,
            "INVALID_FIELD",
            "peers",
            "list of URLs",
        ),
        (
            _body({"url": "http://e/m", "peers": ["file:///etc/passwd"]}),
            422,
            "INVALID_FIELD",
            "peers",
            "only http:// and https://",
        ),
        (
            _body({"spec": "hf://o/r", "peers": ["http://s3cret@p:8000"]}),
            422,
            "INVALID_FIELD",
            "peers",
            "never stored",
        ),
        (
            _body({"url": "http://e/m", "peers": ["http://p:8000/?x=1"]}),
            422,
            "INVALID_FIELD",
            "peers",
            "query",
        ),
        (
            _body({"url": "http://e/m", "peers": [f"http://p{i}:8000" for i in range(17)]}),
            422,
            "INVALID_FIELD",
            "peers",
            "at most 16",
        ),
        (
            _body({"url": "http://e/m", "peers": [["http://p:8000"]]}),
            422,
            "INVALID_FIELD",
            "peers",
            "list of URLs",
        ),
        (b'{"url": "http://e/\xff"}', 400, "INVALID_JSON", None, "not UTF-8"),
        (b'{"url": "http://e/m", "priority": 1e999}', 422, "INVALID_FIELD", "priority", "-1000"),
        (
            _body({"url": "http://e/m", "priority": 10**30}),
            422,
            "INVALID_FIELD",
            "priority",
            "-1000 to 1000",
        ),
        (b'{"url": "http://e/m", "priority": ' + b"9" * 5000 + b"}", 400, "INVALID_JSON", None,
         "more than 100 digits"),
        (b'{"url": "http://e/m", "priority": NaN}', 400, "INVALID_JSON", None, "NaN"),
        (b'{"url": "http://e/m", "url": "http://e/n"}', 400, "INVALID_JSON", None, "'url'"),
        (b'"http://e/m"', 422, "INVALID_BODY", None, "JSON object"),
        (b"null", 422, "INVALID_BODY", None, "JSON object"),
        (b'{"url": "http://e/\\ud800"}', 400, "INVALID_JSON", None, "lone surrogate"),
        (b'{"url": "http://e/m", "dest": "\\udfff"}', 400, "INVALID_JSON", None, "surrogate"),
        (b'{"\\ud800": 1, "url": "http://e/m"}', 400, "INVALID_JSON", None, "lone surrogate"),
        (b"\xef\xbb\xbf{}", 400, "INVALID_JSON", None, "BOM"),
    ],
)  # fmt: skip
async def test_hostile_bodies_get_a_4xx_naming_the_field_and_queue_nothing(
    server, body, status, code, field, says
) -> None:
    got, error = await server.call("POST", "/api/v1/downloads", body=body, headers=JSON)
    assert (got, error["code"], error.get("field")) == (status, code, field), error
    assert says in error["message"]
    assert await server.ledger() == {}


async def test_a_symlink_loop_in_the_root_is_422_naming_dest(server, tmp_path) -> None:
    (tmp_path / "root").mkdir(exist_ok=True)
    (tmp_path / "root" / "loop").symlink_to("loop")
    body = _body({"url": "http://127.0.0.1:9/m", "dest": "loop/m.bin"})
    status, error = await server.call("POST", "/api/v1/downloads", body=body, headers=JSON)
    assert (status, error["code"], error["field"]) == (422, "INVALID_FIELD", "dest")
    assert "cannot be resolved" in error["message"]
    assert await server.ledger() == {}


@pytest.mark.parametrize(
    "filename", ["../../x", "/etc/passwd", "a\\b", "a\u0000b", "C:x", "a//b", "./a", "a" * 300]
)
async def test_seed_002_refuses_a_filename_that_can_never_be_a_repo_path(server, filename) -> None:
    body = _body({"repo_id": "org/repo", "filename": filename})
    status, error = await server.call("POST", "/local/download", body=body, headers=JSON)
    assert status == 422 and error["code"] == "INVALID_FIELD" and error["field"] == "filename"
    assert "refusing to use it as a path" in error["message"]
    assert await server.ledger() == {}


async def test_seed_002_still_takes_file_paths_and_globs(server) -> None:
    for filename in ("*.gguf", "sub/model-Q4_K_M.gguf"):
        body = _body({"repo_id": "org/repo", "filename": filename})
        status, accepted = await server.call("POST", "/local/download", body=body, headers=JSON)
        assert status == 202, accepted
    assert len(await server.ledger()) == 2


HUGE = [str(2**63), str(2**64), "9" * 200]


@pytest.mark.parametrize("raw", HUGE)
async def test_ids_past_sqlite_integers_are_not_found_or_invalid(server, tasks, raw) -> None:
    before = await server.ledger()
    for method, path, status, code in [
        ("GET", f"/download-progress/{raw}", 404, "DOWNLOAD_NOT_FOUND"),
        ("GET", f"/v1/download-progress/{raw}", 404, "DOWNLOAD_NOT_FOUND"),
        ("DELETE", f"/local/download/{raw}", 404, "DOWNLOAD_NOT_FOUND"),
        ("GET", f"/api/v1/downloads/{raw}", 422, "INVALID_ID"),
        ("GET", f"/api/v1/downloads/{raw}/events", 422, "INVALID_ID"),
        ("POST", f"/api/v1/downloads/{raw}/pause", 422, "INVALID_ID"),
        ("DELETE", f"/api/v1/downloads/{raw}", 422, "INVALID_ID"),
    ]:
        got, error = await server.call(method, path)
        if len(raw) > 128 and "download-progress" in path:  # not even a model id's shape
            status, code = 400, "INVALID_ID"
        assert (got, error["code"]) == (status, code), (method, path, error)
    assert await server.ledger() == before
    # the largest id SQLite can hold is just not there
    got, error = await server.call("GET", f"/api/v1/downloads/{2**63 - 1}")
    assert got == 404 and error["code"] == "DOWNLOAD_NOT_FOUND"


@pytest.mark.parametrize(
    "path",
    [
        "/static/app.js%00.css",
        "/static/" + "a" * 5000 + ".css",
        "/static/..%2Fapp.py",
        "/static/.hidden.js",
        "/static/app.js%0A",
        "/static/missing.css",
    ],
)
async def test_hostile_static_paths_are_404(server, path) -> None:
    async with server.http.get(yarl.URL(server.url + path, encoded=True)) as r:
        assert r.status == 404 and (await r.json())["code"] == "NOT_FOUND"
    async with server.http.get("/static/app.js") as r:
        assert r.status == 200 and r.headers["X-Content-Type-Options"] == "nosniff"


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"limit": "9" * 5000}, "limit"),
        ({"offset": "9" * 30}, "offset"),
        ({"limit": "0"}, "limit"),
        ({"limit": "\u0663"}, "limit"),  # an Arabic-Indic three: isdigit(), but not ASCII
        ({"state": "pending,\u0000"}, "state"),
        ({"state": "x" * 5000}, "state"),
    ],
)
async def test_hostile_query_parameters_are_422(server, query, field) -> None:
    async with server.http.get("/api/v1/downloads", params=query) as r:
        error = await r.json()
    assert r.status == 422 and error["code"] == "INVALID_FIELD" and error["field"] == field


@pytest.mark.parametrize("last_id", ["9" * 5000, "-5", "abc", "1e9", " "])
async def test_a_bad_last_event_id_sends_the_current_state(server, tasks, last_id) -> None:
    async with server.http.get("/api/v1/events", headers={"Last-Event-ID": last_id}) as r:
        assert r.status == 200
        _, event = await SSE(r).next()
        assert event["task_id"] in tasks.values()
    async with server.http.get("/api/v1/events", params={"lastEventId": last_id}) as r:
        assert r.status == 200


async def test_bad_tokens_are_401_never_500(tmp_path) -> None:
    async with running_server(_settings(tmp_path), token="s3cret") as (url, app):  # noqa: SIM117
        async with aiohttp.ClientSession(url) as http:
            server = Server(url, http, app[MANAGER])
            for query in ("%ff%fe", "%00", "x" * 5000, "s3cret%00"):
                status, error = await server.call("GET", f"/api/v1/downloads?access_token={query}")
                assert status == 401 and error["code"] == "UNAUTHORIZED", query
            request = (
                b"GET /api/v1/downloads HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                b"Authorization: Bearer s3cret\xff\r\nConnection: close\r\n\r\n"
            )
            status, body = await server.raw(request)
            assert status == 401 and json.loads(body)["code"] == "UNAUTHORIZED"
            assert await server.ledger() == {}


# --- the live bandwidth limit (PUT /api/v1/limits, PUT /api/v1/downloads/{id}/limit) --------


async def _limits(server: Server) -> tuple[dict, dict]:
    """The limits and the ledger: what a refused change must leave as they were."""
    return (await server.manager.get_limits()).to_dict(), await server.ledger()


_LIMIT_BODIES = [
    (_body({"rate": "fast"}), 422, "rate", "not a size"),
    (_body({"rate": "0"}), 422, "rate", "at least 1K"),
    (_body({"rate": "-2M"}), 422, "rate", "'-2M'"),
    (_body({"rate": "1000"}), 422, "rate", "at least 1K"),
    (_body({"rate": "9" * 12 + "T"}), 422, "rate", "more than any limit"),
    (_body({"rate": "9" * 300 + "T"}), 422, "rate", "at most 40 characters"),
    (_body({"rate": "8M" * 5000}), 422, "rate", "at most 40 characters"),
    (_body({"rate": 2**60}), 422, "rate", "more than any limit"),
    (_body({"rate": 1023}), 422, "rate", "at least 1K"),
    (b'{"rate": ' + b"9" * 5000 + b"}", 400, None, "more than 100 digits"),
    (b'{"rate": NaN}', 400, None, "NaN"),
    (_body({"rate": 1.5e6}), 422, "rate", "must be a rate"),
    (_body({"rate": True}), 422, "rate", "must be a rate"),
    (_body({"rate": ["8M"]}), 422, "rate", "must be a rate"),
    (_body({"rate": {"M": 8}}), 422, "rate", "must be a rate"),
    (_body({"speed": "8M"}), 422, "speed", "unknown field"),
    (_body({"rate": "8M", "burst": 1}), 422, "burst", "unknown field"),
    (_body({"rate": "8M", "schedule": None}), 422, "rate", "exactly one"),
    (_body({}), 422, "rate", "exactly one"),
    (b'"8M"', 422, None, "JSON object"),
    (b"8M", 400, None, "JSON"),
    (b"", 400, None, "JSON"),
    (_body({"schedule": "08:00-18:00=2M,17:00-08:00=off"}), 422, "schedule", "overlap at 17:00"),
    (_body({"schedule": "08:00-18:00=2M,19:00-08:00=off"}), 422, "schedule", "18:00 to 19:00"),
    (_body({"schedule": "08:00-18:00=2M"}), 422, "schedule", "no rule from 18:00 to 08:00"),
    (_body({"schedule": "always=2M"}), 422, "schedule", "not a rule like"),
    (_body({"schedule": "25:00-08:00=2M,08:00-25:00=off"}), 422, "schedule", "not a time"),
    (_body({"schedule": "08:00-18:00=fast,18:00-08:00=off"}), 422, "schedule", "not a size"),
    (_body({"schedule": "08:00-18:00=2M,,18:00-08:00=off"}), 422, "schedule", "empty rule"),
    (_body({"schedule": "08:00-08:00=2M"}), 422, "schedule", "covers no time"),
    (_body({"schedule": ",".join(["00:00-00:30=1M"] * 60)}), 422, "schedule", "at most 48 rules"),
    (_body({"schedule": "0" * 2001}), 422, "schedule", "at most 2000 characters"),
    (_body({"schedule": "0" * 100_000}), 413, None, "too large"),
    (_body({"schedule": 800}), 422, "schedule", "must be text"),
    (_body({"schedule": ["08:00-18:00=2M"]}), 422, "schedule", "must be text"),
]


@pytest.mark.parametrize(("body", "status", "field", "says"), _LIMIT_BODIES)
async def test_hostile_limit_bodies_get_a_4xx_naming_the_field_and_change_nothing(
    server, body, status, field, says
) -> None:
    await server.manager.set_limit("3M")
    before = await _limits(server)
    got, error = await server.call("PUT", "/api/v1/limits", body=body, headers=JSON)
    assert (got, error.get("field")) == (status, field), error
    assert says in error["message"] and len(error["message"]) < 300, error
    assert await _limits(server) == before


async def test_hostile_task_limits_get_a_4xx_and_change_nothing(server, tasks) -> None:
    down = tasks["downloading"]
    await server.manager.set_limit("3M", task_id=down)
    before = await _limits(server)
    for path, body, status, code in [
        (f"/api/v1/downloads/{down}/limit", _body({"rate": "slow"}), 422, "INVALID_FIELD"),
        (f"/api/v1/downloads/{down}/limit", _body({"rate": 2**70}), 422, "INVALID_FIELD"),
        (f"/api/v1/downloads/{down}/limit", _body({"rate": 3.5}), 422, "INVALID_FIELD"),
        (f"/api/v1/downloads/{down}/limit", _body({"rate": "1M", "x": 1}), 422, "INVALID_FIELD"),
        (f"/api/v1/downloads/{down}/limit", _body({"schedule": None}), 422, "INVALID_FIELD"),
        (f"/api/v1/downloads/{down}/limit", _body({}), 422, "INVALID_FIELD"),
        (f"/api/v1/downloads/{down}/limit", b"{rate: 1M}", 400, "INVALID_JSON"),
        ("/api/v1/downloads/999/limit", _body({"rate": "1M"}), 404, "DOWNLOAD_NOT_FOUND"),
        ("/api/v1/downloads/0/limit", _body({"rate": "1M"}), 404, "DOWNLOAD_NOT_FOUND"),
        ("/api/v1/downloads/-1/limit", _body({"rate": "1M"}), 422, "INVALID_ID"),
        ("/api/v1/downloads/abc/limit", _body({"rate": "1M"}), 422, "INVALID_ID"),
        *[
            (f"/api/v1/downloads/{raw}/limit", _body({"rate": "1M"}), 422, "INVALID_ID")
            for raw in HUGE
        ],
    ]:
        got, error = await server.call("PUT", path, body=body, headers=JSON)
        assert (got, error["code"]) == (status, code), (path, body[:40], error)
        assert error["message"] and len(error["message"]) < 300
    for raw, status in (("999", 404), (str(2**64), 422)):
        got, error = await server.call("GET", f"/api/v1/downloads/{raw}/limit")
        assert got == status, error
    assert await _limits(server) == before


@pytest.mark.parametrize("origin", [EVIL, "null", "http://127.0.0.1:9"])
async def test_a_foreign_origin_cannot_read_or_change_a_limit(server, tasks, origin) -> None:
    await server.manager.set_limit("3M")
    before = await _limits(server)
    down = tasks["downloading"]
    for method, path, body in [
        ("GET", "/api/v1/limits", None),
        ("PUT", "/api/v1/limits", _body({"rate": None})),
        ("PUT", "/api/v1/limits", _body({"schedule": "00:00-24:00=off"})),
        ("GET", f"/api/v1/downloads/{down}/limit", None),
        ("PUT", f"/api/v1/downloads/{down}/limit", _body({"rate": "1K"})),
    ]:
        status, error = await server.call(
            method, path, body=body, headers={**JSON, "Origin": origin}
        )
        assert status == 403 and error["code"] == "CROSS_ORIGIN", (method, path, error)
    for site in ("cross-site", "same-site"):
        status, error = await server.call(
            "PUT",
            "/api/v1/limits",
            body=_body({"rate": None}),
            headers={**JSON, "Sec-Fetch-Site": site},
        )
        assert status == 403, error
    # A form post from another page (no preflight) is not JSON: refused before it is read.
    for form in ("text/plain", "application/x-www-form-urlencoded"):
        status, error = await server.call(
            "PUT", "/api/v1/limits", body=b'{"rate": null}', headers={"Content-Type": form}
        )
        assert status == 415 and error["code"] == "UNSUPPORTED_MEDIA_TYPE", error
    assert await _limits(server) == before


# --- finished files by SHA-256, for peers (GET /api/v1/blobs/sha256/{hex}) ------------------

BLOB = random.Random(18).randbytes(64 * 1024 + 7)
BLOB_SHA = hashlib.sha256(BLOB).hexdigest()
BLOB_PATH = f"/api/v1/blobs/sha256/{BLOB_SHA}"


@pytest.fixture
async def blob(server: Server, tmp_path: Path) -> Path:
    """A finished file in the server's content index, as a download or a scan leaves one."""
    path = tmp_path / "root" / "indexed.bin"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(BLOB)
    st = path.stat()
    await server.manager.ledger.contents.add(
        str(path), BLOB_SHA, st.st_size, st.st_mtime_ns, "test"
    )
    return path


@pytest.mark.parametrize(
    "raw",
    [
        BLOB_SHA.upper(),
        BLOB_SHA[:63],
        BLOB_SHA + "0",
        "..%2f..%2fetc%2fpasswd",
        "..%2F" + BLOB_SHA,
        "%2e%2e",
        "%00" + BLOB_SHA[1:],
        BLOB_SHA[:63] + "%00",
        "sha256:" + BLOB_SHA,
        BLOB_SHA[:32] + "%20" + BLOB_SHA[33:],
        "a" * 5000,
    ],
    ids=lambda raw: raw[:24],
)
async def test_a_digest_that_is_not_64_lowercase_hex_is_400(server, blob, raw) -> None:
    for method in ("GET", "HEAD"):
        async with server.http.request(
            method, yarl.URL(f"{server.url}/api/v1/blobs/sha256/{raw}", encoded=True)
        ) as r:
            assert r.status == 400, (method, raw)
            assert r.content_type == "application/json"
            if method == "GET":
                error = await r.json()
                assert error["code"] == "INVALID_DIGEST" and "64 lowercase hex" in error["message"]
                assert str(blob.parent) not in error["message"]


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": EVIL},
        {"Origin": "null"},
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site"},
    ],
)
async def test_another_site_cannot_read_a_blob(server, blob, headers) -> None:
    for method in ("GET", "HEAD"):
        async with server.http.request(method, BLOB_PATH, headers=headers) as r:
            assert r.status == 403, (method, headers)
            assert await r.read() != BLOB
            if method == "GET":
                assert (await r.json())["code"] == "CROSS_ORIGIN"


@pytest.mark.parametrize("host", ["evil.example:{port}", "127.0.0.1.evil.example:{port}"])
async def test_a_rebinding_host_cannot_read_a_blob(server, blob, host) -> None:
    host = host.format(port=server.port)
    headers = {"Host": host, "Origin": f"http://{host}"}
    status, error = await server.call("GET", BLOB_PATH, headers=headers)
    assert status == 403 and error["code"] == "HOST_NOT_ALLOWED"


# (Range value, the status, the bytes of a 206 as a slice of the file)
_RANGES = [
    ("bytes=abc", 416, None),
    ("bytes=5-2", 416, None),
    ("bytes=--1", 416, None),
    ("bytes=", 416, None),
    ("bytes=-0", 416, None),
    ("bytes=\u0663-5", 416, None),  # an Arabic-Indic three: a digit to int(), not to HTTP
    (f"bytes={len(BLOB)}-", 416, None),
    ("bytes=" + "9" * 41 + "-", 416, None),
    ("bytes=0-" + "9" * 40, 206, slice(0, None)),  # to the end, however far "the end" is
    ("bytes=0-0,2-2", 416, None),
    ("bytes=" + ",".join(f"{i}-{i}" for i in range(500)), 416, None),
    ("bytes=" + "0" * 5000 + "-1", 416, None),
    ("items=0-5", 200, slice(None)),  # a unit we do not know is ignored, as RFC 9110 says
    ("BYTES = 3-5", 206, slice(3, 6)),
    ("bytes=-100", 206, slice(-100, None)),
    ("bytes=-" + "9" * 30, 206, slice(None)),
]


@pytest.mark.parametrize(("value", "status", "part"), _RANGES, ids=[r[:24] for r, *_ in _RANGES])
async def test_hostile_ranges_get_416_or_the_right_bytes_never_a_500(
    server, blob, value, status, part
) -> None:
    async with server.http.get(BLOB_PATH, headers={"Range": value}) as r:
        body = await r.read()
        assert r.status == status, (value, body[:200])
        if status == 416:
            assert r.headers["Content-Range"] == f"bytes */{len(BLOB)}"
            assert json.loads(body)["code"] == "RANGE_NOT_SATISFIABLE"
        else:
            assert body == BLOB[part]
    async with server.http.get(BLOB_PATH) as r:  # and the server is still fine
        assert r.status == 200 and await r.read() == BLOB


# --- the workers (GET /api/v1/workers) ------------------------------------------------------


async def test_the_workers_route_lists_the_server_itself_and_a_task_names_its_worker(
    server, tasks
) -> None:
    status, body = await server.call("GET", "/api/v1/workers")
    assert status == 200, body
    [me] = [w for w in body["workers"] if w["owner"] == server.manager.lease.owner]
    assert me["gone"] is False and me["pid"] > 0
    status, task = await server.call("GET", f"/api/v1/downloads/{tasks['downloading']}")
    assert task["worker"] == {"owner": me["owner"], "host": me["host"], "pid": me["pid"]}
    status, paused = await server.call("GET", f"/api/v1/downloads/{tasks['paused']}")
    assert paused["worker"] is None


@pytest.mark.parametrize("origin", [EVIL, "null", "http://127.0.0.1:9"])
async def test_a_foreign_origin_cannot_list_the_workers(server, origin) -> None:
    status, error = await server.call("GET", "/api/v1/workers", headers={"Origin": origin})
    assert status == 403 and error["code"] == "CROSS_ORIGIN", error
    status, error = await server.call(
        "GET", "/api/v1/workers", headers={"Sec-Fetch-Site": "cross-site"}
    )
    assert status == 403, error


async def test_the_workers_route_takes_no_writes_and_no_ids(server) -> None:
    before = await server.ledger()
    for method in ("POST", "PUT", "DELETE", "PATCH"):
        status, error = await server.call(
            method, "/api/v1/workers", body=_body({"owner": "x"}), headers=JSON
        )
        assert status == 405, (method, error)
    for path in ("/api/v1/workers/1", "/api/v1/workers/..%2f..", "/api/v1/workers/%00"):
        status, error = await server.call("GET", path)
        assert status == 404, (path, error)
    # Query parameters mean nothing here: ignored, whatever they hold.
    status, body = await server.call("GET", "/api/v1/workers?owner=%ff%fe&x=" + "y" * 4000)
    assert status == 200 and isinstance(body["workers"], list)
    assert await server.ledger() == before


async def test_the_workers_route_needs_the_token_and_refuses_the_peer_token(tmp_path) -> None:
    async with running_server(  # noqa: SIM117
        _settings(tmp_path), token="s3cret", peer_token="p33r"
    ) as (url, app):
        async with aiohttp.ClientSession(url) as http:
            server = Server(url, http, app[MANAGER])
            for headers in ({}, {"Authorization": "Bearer p33r"}, {"Authorization": "Bearer x"}):
                status, error = await server.call("GET", "/api/v1/workers", headers=headers)
                assert status == 401 and error["code"] == "UNAUTHORIZED", (headers, error)
            status, body = await server.call(
                "GET", "/api/v1/workers", headers={"Authorization": "Bearer s3cret"}
            )
            assert status == 200 and "workers" in body
