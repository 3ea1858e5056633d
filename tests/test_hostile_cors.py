"""CORS for the origins ``serve --cors-origin`` lists (issue 17), against hostile callers:
a listed origin's preflight is answered and its answers carry its origin; every other
origin (``null``, look-alikes, another port or scheme) gets no CORS header at all and the
same 403 as without the option; the token is still required."""

from __future__ import annotations

import json
import random
from pathlib import Path

import aiohttp
import pytest
from managerkit import manager_settings
from serverkit import SSE, running_server

from downloader.server import create_app
from downloader.server.cors import MAX_AGE
from downloader.settings import MiB
from downloader.testing.origin import Origin
from downloader.weborigin import parse_web_origin, split_origins

APP = "http://127.0.0.1:5173"  # the listed site (a dev server on another port)
JSON = {"Content-Type": "application/json"}
TOKEN = "s3cret-token"


def _settings(tmp_path: Path):
    # Nothing here may reach the internet: the Hub "endpoint" is a closed local port.
    return manager_settings(
        tmp_path / "home", downloads=tmp_path / "root", hf_endpoint="http://127.0.0.1:9"
    )


def _preflight(origin: str, method: str = "POST", headers: str = "content-type") -> dict:
    return {
        "Origin": origin,
        "Access-Control-Request-Method": method,
        "Access-Control-Request-Headers": headers,
        "Sec-Fetch-Site": "same-site",
        "Sec-Fetch-Mode": "cors",
    }


def _cors_headers(response: aiohttp.ClientResponse) -> dict[str, str]:
    return {k: v for k, v in response.headers.items() if k.lower().startswith("access-control")}


@pytest.fixture
async def server(tmp_path: Path):
    """A server that lists APP, and an HTTP client for it."""
    async with (
        running_server(_settings(tmp_path), heartbeat=0.3, allowed_origins={APP}) as (url, app),
        aiohttp.ClientSession(url) as http,
    ):
        yield url, http, app


@pytest.fixture
async def origin():
    data = random.Random(17).randbytes(MiB)
    async with Origin({"m.bin": data}) as served:
        yield served


# --- what a listed origin gets ------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "method", "methods"),
    [
        ("/api/v1/downloads", "POST", {"GET", "HEAD", "POST"}),
        ("/api/v1/downloads/7", "DELETE", {"GET", "HEAD", "DELETE"}),
        ("/api/v1/downloads/7/pause", "POST", {"POST"}),
        ("/local/download", "POST", {"POST"}),
        ("/local/download/7", "DELETE", {"DELETE"}),
        # DELETE /local/download/{download_id} takes "status" as an id too
        ("/local/download/status", "GET", {"GET", "HEAD", "DELETE"}),
        ("/download-progress/7", "GET", {"GET", "HEAD"}),
    ],
)
async def test_a_listed_origins_preflight_names_its_methods_and_the_token_header(
    server, path, method, methods
) -> None:
    _, http, _ = server
    async with http.options(
        path, headers=_preflight(APP, method, "authorization,content-type")
    ) as r:
        assert r.status == 204, await r.text()
        assert r.headers["Access-Control-Allow-Origin"] == APP
        assert set(r.headers["Access-Control-Allow-Methods"].split(", ")) == methods
        allowed = {h.strip().lower() for h in r.headers["Access-Control-Allow-Headers"].split(",")}
        assert {"authorization", "content-type"} <= allowed
        assert 0 < int(r.headers["Access-Control-Max-Age"]) == MAX_AGE <= 7200
        assert "Origin" in r.headers["Vary"]
        # no cookies are used, so none may be sent: a page cannot ride the user's session
        assert "Access-Control-Allow-Credentials" not in r.headers
        assert "Access-Control-Allow-Private-Network" not in r.headers


async def test_a_private_network_preflight_is_allowed_for_a_listed_origin_only(server) -> None:
    _, http, _ = server
    ask = {"Access-Control-Request-Private-Network": "true"}
    async with http.options("/api/v1/downloads", headers={**_preflight(APP), **ask}) as r:
        assert r.status == 204
        assert r.headers["Access-Control-Allow-Private-Network"] == "true"
    evil = {**_preflight("https://evil.example"), **ask, "Sec-Fetch-Site": "cross-site"}
    async with http.options("/api/v1/downloads", headers=evil) as r:
        assert r.status == 403 and not _cors_headers(r)


async def test_a_preflight_for_a_path_that_does_not_exist_is_404(server) -> None:
    _, http, _ = server
    async with http.options("/api/v1/nothing", headers=_preflight(APP)) as r:
        assert r.status == 404
        assert "Access-Control-Allow-Methods" not in r.headers


async def test_an_options_request_that_is_no_preflight_is_405_as_before(server) -> None:
    _, http, _ = server
    async with http.options("/api/v1/downloads", headers={"Origin": APP}) as r:
        assert r.status == 405
        assert "Access-Control-Allow-Methods" not in r.headers


async def test_a_listed_origins_answers_and_event_streams_carry_its_origin(server, origin) -> None:
    _, http, _ = server
    site = {"Origin": APP, "Sec-Fetch-Site": "same-site"}
    async with http.post("/api/v1/downloads", json={"url": origin.url("m.bin")}, headers=site) as r:
        assert r.status == 202, await r.text()
        assert r.headers["Access-Control-Allow-Origin"] == APP
        assert "Origin" in r.headers["Vary"]
        task_id = (await r.json())["id"]
    streams = [
        "/api/v1/events",
        f"/api/v1/downloads/{task_id}/events",
        "/local/download/status",
    ]
    for path in streams:
        async with http.get(path, headers=site) as r:
            assert r.status == 200 and r.content_type == "text/event-stream", path
            assert r.headers["Access-Control-Allow-Origin"] == APP, path
            assert "Origin" in r.headers["Vary"], path
            await SSE(r).next()
    for path in (f"/download-progress/{task_id}", "/api/v1/downloads", "/health"):
        async with http.get(path, headers=site) as r:
            assert r.status == 200, path
            assert r.headers["Access-Control-Allow-Origin"] == APP, path
    # an error is readable too, so the page can show why
    async with http.get("/api/v1/downloads/999", headers=site) as r:
        assert r.status == 404 and r.headers["Access-Control-Allow-Origin"] == APP


async def test_a_listed_origin_still_needs_the_token(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    async with (
        running_server(settings, token=TOKEN, allowed_origins={APP}) as (url, _),
        aiohttp.ClientSession(url) as http,
    ):
        # The preflight carries no token (browsers never send one): answered, and opens nothing.
        preflight = _preflight(APP, "POST", "authorization,content-type")
        async with http.options("/api/v1/downloads", headers=preflight) as r:
            assert r.status == 204 and r.headers["Access-Control-Allow-Origin"] == APP
        site = {"Origin": APP, "Sec-Fetch-Site": "same-site"}
        body = {"url": "http://127.0.0.1:9/m"}
        async with http.post("/api/v1/downloads", json=body, headers=site) as r:
            assert r.status == 401 and (await r.json())["code"] == "UNAUTHORIZED"
            assert r.headers["Access-Control-Allow-Origin"] == APP  # readable: ask for a token
        async with http.get("/local/download/status", headers=site) as r:
            assert r.status == 401
        bearer = {**site, "Authorization": f"Bearer {TOKEN}"}
        async with http.post("/api/v1/downloads", json=body, headers=bearer) as r:
            assert r.status == 202
        async with http.get(f"/local/download/status?access_token={TOKEN}", headers=site) as r:
            assert r.status == 200 and r.headers["Access-Control-Allow-Origin"] == APP


# --- what every other origin gets: nothing, as before -------------------------------------

_OTHERS = [
    "https://evil.example",
    "null",
    "http://127.0.0.1:5173.evil.example",  # the listed origin as a prefix
    "http://127.0.0.1:51730",
    "http://127.0.0.1:517",
    "http://127.0.0.1",
    "https://127.0.0.1:5173",  # another scheme
    "http://localhost:5173",  # the same machine, but another origin
    "http://127.0.0.2:5173",
    "HTTP://127.0.0.1:5173",  # no browser writes it so
    "http://127.0.0.1:5173/",
    "http://user@127.0.0.1:5173",
    "http://127.0.0.1:5173, http://127.0.0.1:5173",
    "*",
]


@pytest.mark.parametrize("other", _OTHERS)
async def test_another_origins_preflight_gets_no_cors_header_and_is_refused(server, other) -> None:
    _, http, _ = server
    async with http.options("/api/v1/downloads", headers=_preflight(other)) as r:
        assert r.status == 403 and (await r.json())["code"] == "CROSS_ORIGIN"
        assert not _cors_headers(r), r.headers


@pytest.mark.parametrize("other", _OTHERS)
async def test_another_origins_requests_get_no_cors_header_and_queue_nothing(server, other) -> None:
    _, http, app = server
    from downloader.server.context import MANAGER

    site = {"Origin": other, "Sec-Fetch-Site": "cross-site"}
    async with http.post(
        "/api/v1/downloads",
        data=json.dumps({"url": "http://127.0.0.1:9/m"}),
        headers={**site, **JSON},
    ) as r:
        assert r.status == 403 and (await r.json())["code"] == "CROSS_ORIGIN"
        assert not _cors_headers(r)
    for path in ("/local/download/status", "/api/v1/downloads", "/download-progress/1"):
        async with http.get(path, headers=site) as r:
            assert r.status == 403 and not _cors_headers(r), path
    assert await app[MANAGER].list() == []


async def test_without_cors_origins_no_answer_has_a_cors_header(tmp_path: Path) -> None:
    async with (
        running_server(_settings(tmp_path)) as (url, _),
        aiohttp.ClientSession(url) as http,
    ):
        async with http.options("/api/v1/downloads", headers=_preflight(APP)) as r:
            assert r.status == 403 and not _cors_headers(r)
        async with http.get("/api/v1/downloads", headers={"Origin": APP}) as r:
            assert r.status == 403 and not _cors_headers(r)
        async with http.get("/api/v1/downloads") as r:
            assert r.status == 200 and not _cors_headers(r)
            assert "Vary" not in r.headers  # responses are as they were before the option


# --- the values themselves ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("*", "wildcards"),
        ("http://*.example", "wildcards"),
        ("null", "'null'"),
        ("ftp://app.example", "http or https"),
        ("app.example", "scheme://host"),
        ("http://app.example/", "a path"),
        ("http://app.example/app", "a path"),
        ("http://app.example?x=1", "a query"),
        ("http://app.example#top", "scheme://host"),
        ("http://me:pw@app.example", "user information"),
        ("http://app.example:0", "1 to 65535"),
        ("http://app.example:65536", "1 to 65535"),
        ("http://app.example:", "1 to 65535"),
        ("http://app.example:\uff18\uff10", "1 to 65535"),  # fullwidth digits
        ("http://[::1", "no closing"),
        ("http://[fe80::1%25eth0]:80", "not an IPv6"),
        ("http://127.1:3000", "not an IPv4"),
        ("http://0x7f.0.0.1", "not an IPv4"),
        ("http://exa mple.com", "scheme://host"),
        ("http://bücher.example", "xn--"),
        ("http://-bad.example", "not a host name"),
        ("http://" + "a" * 300, "1-300 characters"),
        ("", "1-300 characters"),
    ],
)
def test_a_bad_cors_origin_is_refused_naming_it(value, says) -> None:
    with pytest.raises(ValueError, match="origin") as caught:
        parse_web_origin(value)
    assert says in str(caught.value)
    assert repr(value[:100]) in str(caught.value) or not value


def test_an_app_with_a_bad_origin_is_not_created(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="'null'"):
        create_app(_settings(tmp_path), allowed_origins={"null"})


@pytest.mark.parametrize(
    ("value", "written"),
    [
        ("HTTP://App.Example:3000", "http://app.example:3000"),
        ("https://app.example:443", "https://app.example"),
        ("http://127.0.0.1:80", "http://127.0.0.1"),
        ("http://[0:0::1]:8080", "http://[::1]:8080"),
        (" http://localhost:5173 ", "http://localhost:5173"),
    ],
)
def test_a_cors_origin_is_kept_as_a_browser_writes_it(value, written) -> None:
    assert parse_web_origin(value) == written


def test_the_environment_list_is_comma_separated() -> None:
    assert split_origins(" http://a.example, ,https://b.example:8443,") == [
        "http://a.example",
        "https://b.example:8443",
    ]
