"""Every route against a running server: statuses, JSON shapes, SSE, and bad input."""

from __future__ import annotations

import asyncio
import itertools
import random
from pathlib import Path

import aiohttp
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from managerkit import manager_settings
from serverkit import SSE, running_server

from downloader.server import BindError, check_bind
from downloader.server.context import EVENTS, MANAGER
from downloader.settings import MiB
from downloader.testing.origin import Origin


@pytest.fixture(scope="module")
def data() -> bytes:
    return random.Random(70).randbytes(8 * MiB)


@pytest.fixture
async def origin(data: bytes):
    async with Origin({"m.bin": data, "small.bin": data[:1000]}, throttle=4 * MiB) as origin:
        yield origin


@pytest.fixture
async def server(tmp_path: Path):
    settings = manager_settings(tmp_path / "home", downloads=tmp_path / "root")
    async with (
        running_server(settings, heartbeat=0.3) as (url, app),
        aiohttp.ClientSession(url) as http,
    ):
        yield http, app


async def wait_state(http: aiohttp.ClientSession, task_id: int, *states: str) -> dict:
    async with asyncio.timeout(30):
        while True:
            async with http.get(f"/api/v1/downloads/{task_id}") as r:
                body = await r.json()
            if body["state"] in states:
                return body
            await asyncio.sleep(0.05)


# --- our API ----------------------------------------------------------------------------------


@pytest.mark.parametrize("form", ["spec", "url", "provider"])
async def test_post_downloads_accepts_each_form_and_answers_202(server, origin, form) -> None:
    http, _ = server
    url = origin.url("small.bin")
    body = {
        "spec": {"spec": url},
        "url": {"url": url},
        "provider": {"provider": "url", "model": url},
    }[form]
    async with http.post("/api/v1/downloads", json=body | {"priority": 3, "connections": 2}) as r:
        assert r.status == 202
        accepted = await r.json()
    assert set(accepted) >= {"download_id", "message", "progress_endpoint"}
    assert accepted["progress_endpoint"] == f"/api/v1/downloads/{accepted['download_id']}"
    done = await wait_state(http, accepted["id"], "completed", "failed")
    assert done["state"] == "completed" and done["priority"] == 3
    assert done["total_bytes"] == done["downloaded_bytes"] == 1000


async def test_post_a_url_with_mirrors_takes_bytes_from_each(server, origin, data) -> None:
    http, _ = server
    async with Origin({"m.bin": data}, throttle=4 * MiB) as other:
        body = {"url": origin.url("m.bin"), "mirrors": [other.url("m.bin")], "connections": 4}
        async with http.post("/api/v1/downloads", json=body) as r:
            assert r.status == 202, await r.text()
            task_id = (await r.json())["id"]
        done = await wait_state(http, task_id, "completed", "failed")
    assert done["state"] == "completed", done
    assert origin.served_by_file["m.bin"] > MiB and other.served_by_file["m.bin"] > MiB


async def test_get_one_download_has_its_files_and_history(server, origin, tmp_path) -> None:
    http, _ = server
    async with http.post(
        "/api/v1/downloads", json={"url": origin.url("small.bin"), "dest": "sub/"}
    ) as r:
        task_id = (await r.json())["id"]
    done = await wait_state(http, task_id, "completed")
    [f] = done["files"]
    assert f["path"] == "small.bin" and f["size"] == 1000 and f["state"] == "completed"
    assert f["local_path"] == str((tmp_path / "root" / "sub" / "small.bin").resolve())
    assert [(e["from"], e["to"]) for e in done["events"]][:1] == [(None, "pending")]
    assert done["events"][-1]["to"] == "completed"


async def test_list_filters_by_state_and_pages(server, origin) -> None:
    http, _ = server
    ids = []
    for i in range(3):
        async with http.post(
            "/api/v1/downloads", json={"url": origin.url("small.bin"), "dest": f"n{i}.bin"}
        ) as r:
            ids.append((await r.json())["id"])
    for task_id in ids:
        await wait_state(http, task_id, "completed")
    async with http.get("/api/v1/downloads", params={"state": "completed", "limit": 2}) as r:
        page = await r.json()
    assert r.status == 200 and page["total"] == 3 and len(page["downloads"]) == 2
    assert [d["id"] for d in page["downloads"]] == sorted(ids, reverse=True)[:2]
    async with http.get("/api/v1/downloads", params={"state": "failed"}) as r:
        assert (await r.json())["downloads"] == []
    async with http.get("/api/v1/downloads", params={"state": "bogus"}) as r:
        assert r.status == 422 and (await r.json())["field"] == "state"


async def test_pause_resume_cancel_and_purge_over_rest(server, origin, tmp_path) -> None:
    http, _ = server
    async with http.post(
        "/api/v1/downloads", json={"url": origin.url("m.bin"), "dest": "m.bin"}
    ) as r:
        task_id = (await r.json())["id"]
    await wait_state(http, task_id, "downloading")
    async with http.post(f"/api/v1/downloads/{task_id}/pause") as r:
        assert r.status == 200 and (await r.json())["state"] == "paused"
    async with http.post(f"/api/v1/downloads/{task_id}/pause") as r:
        error = await r.json()
        assert r.status == 409 and error["code"] == "INVALID_STATE"
        assert "cannot go from paused to paused" in error["message"]
    async with http.post(f"/api/v1/downloads/{task_id}/retry") as r:  # retry of paused resumes
        assert r.status == 200
    await wait_state(http, task_id, "downloading")
    async with http.delete(f"/api/v1/downloads/{task_id}", params={"purge": "true"}) as r:
        assert r.status == 200 and (await r.json())["state"] == "cancelled"
    async with asyncio.timeout(5):
        while (tmp_path / "root" / "m.bin.part").exists():
            await asyncio.sleep(0.05)
    async with http.post(f"/api/v1/downloads/{task_id}/resume") as r:
        assert r.status == 409
    async with http.post("/api/v1/downloads/999/pause") as r:
        assert r.status == 404 and (await r.json())["code"] == "DOWNLOAD_NOT_FOUND"
    async with http.post("/api/v1/downloads/abc/pause") as r:
        assert r.status == 422 and (await r.json())["field"] == "id"


async def test_health_and_openapi_describe_the_server(server) -> None:
    http, _ = server
    for path in ("/health", "/api/v1/health"):
        async with http.get(path) as r:
            assert r.status == 200 and (await r.json())["status"] == "ok"
    async with http.get("/api/v1/openapi.json") as r:
        spec = await r.json()
    assert spec["openapi"].startswith("3.")
    for path in (
        "/api/v1/downloads",
        "/api/v1/downloads/{id}",
        "/api/v1/downloads/{id}/pause",
        "/api/v1/downloads/{id}/resume",
        "/api/v1/downloads/{id}/retry",
        "/api/v1/events",
        "/api/v1/downloads/{id}/events",
        "/local/download",
        "/local/download/status",
        "/local/download/{download_id}",
        "/download-progress/{id}",
        "/v1/download-progress/{id}",
        "/downloads",
        "/v1/downloads",
        "/health",
    ):
        assert path in spec["paths"], path


# --- SSE ------------------------------------------------------------------------------------


async def test_events_carry_ids_and_progress_then_reconnect_replays_what_was_missed(
    server, origin
) -> None:
    http, _ = server
    async with http.get("/api/v1/events") as r:
        assert r.headers["Content-Type"].startswith("text/event-stream")
        stream = SSE(r)
        async with http.post("/api/v1/downloads", json={"url": origin.url("m.bin")}) as posted:
            task_id = (await posted.json())["id"]
        seen = await stream.until(
            lambda d: d["task_id"] == task_id and d["percent"] and d["percent"] > 20
        )
        ids = [i for i, _ in seen]
        assert ids == sorted(ids) and len(set(ids)) == len(ids)
        last_id = ids[-1]
    # reconnect with Last-Event-ID: the events after it come first, then it goes on live
    async with http.get("/api/v1/events", headers={"Last-Event-ID": str(last_id)}) as r:
        stream = SSE(r)
        first_id, _ = await stream.next()
        assert first_id > last_id
        done = await stream.until(lambda d: d["task_id"] == task_id and d["status"] == "complete")
        assert done[-1][1]["percent"] == 100.0


async def test_events_are_throttled_per_download_and_heartbeats_flow(server, origin) -> None:
    http, _ = server
    async with http.post("/api/v1/downloads", json={"url": origin.url("m.bin")}) as posted:
        task_id = (await posted.json())["id"]
    async with http.get(f"/api/v1/downloads/{task_id}/events") as r:
        stream = SSE(r)
        loop = asyncio.get_running_loop()
        stamps = []
        while True:
            _, event = await stream.next()
            stamps.append(loop.time())
            assert event["task_id"] == task_id
            if event["status"] == "complete":
                break
        gaps = [b - a for a, b in itertools.pairwise(stamps)]
        assert len(stamps) >= 5
        # at most ~4 a second; only the snapshot sent on connecting and the final state
        # may come sooner after the one before
        assert sum(g < 0.2 for g in gaps) <= 2, gaps
        await asyncio.sleep(1.0)  # the test server pings every 0.3 s
        async with asyncio.timeout(2):
            await r.content.readline()
            while stream.comments == 0:
                line = await r.content.readline()
                stream.comments += line.startswith(b":")
        assert stream.comments > 0


async def test_a_client_that_goes_away_leaves_nothing_behind(server) -> None:
    http, app = server
    hub, manager = app[EVENTS], app[MANAGER]
    before_clients, before_bus = hub.clients, manager.bus.subscribers
    for _ in range(5):
        async with http.get("/api/v1/events") as r:
            await r.content.readline()
            assert hub.clients == before_clients + 1
    async with asyncio.timeout(5):
        while hub.clients != before_clients:
            await asyncio.sleep(0.05)
    assert manager.bus.subscribers == before_bus


# --- bad input --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({"url": "ftp://example.com/m.bin"}, 422, "url"),
        ({"url": "not a url"}, 422, "url"),
        ({"url": "http://e/m", "dest": "/etc/passwd"}, 422, "dest"),
        ({"url": "http://e/m", "dest": "../../outside"}, 422, "dest"),
        ({"url": "http://e/m", "priority": "high"}, 422, "priority"),
        ({"url": "http://e/m", "connections": 0}, 422, "connections"),
        ({"spec": "bogus"}, 422, "spec"),
        ({"provider": "openai", "model": "gpt"}, 422, "model"),
        ({"url": "http://e/m", "spec": "http://e/n"}, 422, None),
        ([1, 2], 422, None),
    ],
)
async def test_bad_downloads_get_their_status_and_name_the_field(
    server, body, status, field
) -> None:
    http, _ = server
    async with http.post("/api/v1/downloads", json=body) as r:
        error = await r.json()
    assert r.status == status and error["code"] and error["message"]
    assert error.get("field") == field


async def test_a_symlink_out_of_the_root_is_refused(server, tmp_path) -> None:
    http, _ = server
    (tmp_path / "root").mkdir(exist_ok=True)
    (tmp_path / "root" / "escape").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    async with http.post("/api/v1/downloads", json={"url": "http://e/m", "dest": "escape/m"}) as r:
        error = await r.json()
    assert r.status == 422 and error["field"] == "dest"
    assert "leads outside the download root" in error["message"]


async def test_malformed_json_is_400_with_the_parse_error_and_big_bodies_413(server) -> None:
    http, _ = server
    json_type = {"Content-Type": "application/json"}
    async with http.post("/api/v1/downloads", data=b'{"url": ', headers=json_type) as r:
        error = await r.json()
    assert r.status == 400 and error["code"] == "INVALID_JSON"
    assert error["message"].startswith("malformed JSON: Expecting value")
    async with http.post("/api/v1/downloads", data=b"x" * (65 * 1024), headers=json_type) as r:
        assert r.status == 413 and (await r.json())["code"] == "BODY_TOO_LARGE"
    async with http.get("/no/such/route") as r:
        assert r.status == 404 and (await r.json())["code"] == "NOT_FOUND"
    async with http.put("/api/v1/downloads") as r:
        assert r.status == 405 and "code" in await r.json()


async def test_the_token_is_required_on_every_route_when_set(tmp_path: Path) -> None:
    settings = manager_settings(tmp_path / "home", downloads=tmp_path / "root")
    async with running_server(settings, token="s3cret") as (url, _):  # noqa: SIM117
        async with aiohttp.ClientSession(url) as http:
            for method, path in (
                ("GET", "/"),
                ("GET", "/health"),
                ("GET", "/api/v1/downloads"),
                ("POST", "/api/v1/downloads"),
                ("GET", "/api/v1/events"),
                ("GET", "/downloads"),
                ("GET", "/download-progress/1"),
                ("POST", "/local/download"),
                ("GET", "/local/download/status"),
                ("GET", "/api/v1/openapi.json"),
            ):
                for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret"}):
                    async with http.request(method, path, headers=headers) as r:
                        assert r.status == 401, (method, path, headers)
                        assert (await r.json())["code"] == "UNAUTHORIZED"
            async with http.get("/health", headers={"Authorization": "Bearer s3cret"}) as r:
                assert r.status == 200
            async with http.get("/api/v1/events", params={"access_token": "s3cret"}) as r:
                assert r.status == 200  # EventSource cannot send headers: the query works too


def test_listening_beyond_this_machine_without_a_token_is_refused() -> None:
    for host in ("0.0.0.0", "192.0.2.10", "::"):
        with pytest.raises(BindError, match=f"refusing to listen on {host} without a token"):
            check_bind(host, None)
    check_bind("127.0.0.1", None)
    check_bind("::1", None)
    check_bind("0.0.0.0", "a-token")


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=10,
)
FIELDS = st.fixed_dictionaries(
    {},
    optional={
        k: JSON
        for k in (
            "spec",
            "url",
            "provider",
            "model",
            "dest",
            "priority",
            "connections",
            "filename",
            "allow_patterns",
            "revision",
            "via",
            "base_url",
            "token",
            "model_id",
        )
    },
)


@hsettings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(body=FIELDS | JSON, path_id=st.text(max_size=12))
def test_no_request_reaches_a_500(tmp_path: Path, body, path_id) -> None:
    async def probe() -> None:
        settings = manager_settings(tmp_path / "home", downloads=tmp_path / "root")
        async with running_server(settings) as (url, _), aiohttp.ClientSession(url) as http:
            async with http.post("/api/v1/downloads", json=body) as r:
                assert r.status < 500, await r.text()
                if r.status >= 400:
                    assert set(await r.json()) >= {"code", "message"}
            quoted = aiohttp.helpers.quote(path_id, safe="") if path_id else "x"
            for method, path in (
                ("GET", f"/api/v1/downloads/{quoted}"),
                ("POST", f"/api/v1/downloads/{quoted}/pause"),
                ("DELETE", f"/api/v1/downloads/{quoted}"),
                ("GET", f"/download-progress/{quoted}"),
                ("DELETE", f"/local/download/{quoted}"),
            ):
                async with http.request(method, path) as r:
                    assert r.status < 500, (method, path, await r.text())

    asyncio.run(probe())
