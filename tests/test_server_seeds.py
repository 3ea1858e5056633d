"""The seed routes with the seeds' exact shapes (seed 002's Downloads API, seed 004's
progress API)."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import aiohttp
import pytest
from hubkit import build_hub
from managerkit import manager_settings
from serverkit import SSE, running_server

from downloader.settings import MiB
from downloader.testing.origin import Origin

SEED002_FIELDS = {
    "download_id",
    "repo_id",
    "filename",
    "status",
    "progress_percent",
    "bytes_downloaded",
    "total_bytes",
    "download_speed_mbps",
    "eta_seconds",
    "error_message",
    "started_at",
    "completed_at",
    "local_file_path",
}
SEED004_FIELDS = {"model_id", "status", "url", "local_path", "progress", "timing"}


@pytest.fixture
async def stack(tmp_path: Path):
    hub = await asyncio.to_thread(build_hub, tmp_path / "hub", cdn_throttle=4 * MiB)
    data = random.Random(4).randbytes(6 * MiB)
    async with hub, Origin({"m.bin": data}, throttle=4 * MiB) as origin:
        settings = manager_settings(
            tmp_path / "home",
            downloads=tmp_path / "root",
            hf_endpoint=hub.endpoint,
            hf_cache=tmp_path / "hfcache",
        )
        async with running_server(settings) as (url, _), aiohttp.ClientSession(url) as http:
            yield http, hub, origin


async def test_seed_002_post_then_status_stream_then_completed_with_local_file_path(stack) -> None:
    http, hub, _ = stack
    async with http.get("/local/download/status", headers={"Accept": "text/event-stream"}) as r:
        stream = SSE(r)
        async with http.post(
            "/local/download", json={"repo_id": "org/tiny", "filename": "model-Q4_K_M.gguf"}
        ) as posted:
            assert posted.status == 202
            accepted = await posted.json()
        assert set(accepted) == {"download_id", "message"}
        assert accepted["message"] == "Download started for org/tiny/model-Q4_K_M.gguf"
        events = await stream.until(
            lambda d: d["download_id"] == accepted["download_id"] and d["status"] == "completed"
        )
    mine = [d for _, d in events if d["download_id"] == accepted["download_id"]]
    for d in mine:
        assert set(d) >= SEED002_FIELDS
        assert d["status"] in ("pending", "downloading", "completed", "failed", "cancelled")
        assert isinstance(d["progress_percent"], int | float)
    assert any(d["status"] == "downloading" and 0 < d["progress_percent"] < 100 for d in mine)
    last = mine[-1]
    assert last["repo_id"] == "org/tiny" and last["filename"] == "model-Q4_K_M.gguf"
    assert last["progress_percent"] == 100.0 and last["completed_at"].endswith("Z")
    assert last["started_at"].endswith("Z") and last["error_message"] is None
    assert (
        last["bytes_downloaded"]
        == last["total_bytes"]
        == hub.file("org/tiny", "model-Q4_K_M.gguf").size
    )
    assert (
        Path(last["local_file_path"]).read_bytes()
        == hub.file("org/tiny", "model-Q4_K_M.gguf").source.read_bytes()
    )


async def test_seed_002_delete_cancels_and_unknown_ids_are_download_not_found(stack) -> None:
    http, _, origin = stack
    async with http.post("/api/v1/downloads", json={"url": origin.url("m.bin")}) as r:
        task_id = (await r.json())["download_id"]
    async with http.delete(f"/local/download/{task_id}") as r:
        assert r.status == 200 and await r.json() == {"message": "Download cancelled successfully"}
    for unknown in ("999", "550e8400-e29b-41d4-a716-446655440000"):
        async with http.delete(f"/local/download/{unknown}") as r:
            body = await r.json()
        assert r.status == 404 and body["code"] == "DOWNLOAD_NOT_FOUND"


async def test_seed_002_bad_bodies_are_refused(stack) -> None:
    http, _, _ = stack
    for body, field in (
        ({"filename": "x"}, "repo_id"),
        ({"repo_id": "org/tiny"}, "filename"),
        ({"repo_id": "not a repo", "filename": "x"}, "repo_id"),
    ):
        async with http.post("/local/download", json=body) as r:
            error = await r.json()
        assert r.status == 422 and error["field"] == field


async def test_seed_004_progress_by_id_and_by_model_id_and_the_active_list(stack) -> None:
    http, _, origin = stack
    async with http.post(
        "/api/v1/downloads", json={"url": origin.url("m.bin"), "model_id": "my-model"}
    ) as r:
        task_id = (await r.json())["download_id"]
    for path in (f"/download-progress/{task_id}", "/v1/download-progress/my-model"):
        async with http.get(path) as r:
            body = await r.json()
        assert r.status == 200 and set(body) >= SEED004_FIELDS
        assert body["model_id"] == "my-model" and body["url"] == origin.url("m.bin")
        assert set(body["progress"]) == {
            "downloaded_bytes",
            "total_bytes",
            "percentage",
            "download_speed_bps",
        }
        assert set(body["timing"]) == {
            "start_time",
            "elapsed_seconds",
            "estimated_remaining_seconds",
        }
        assert body["status"] in ("downloading", "completed")
    for path in ("/downloads", "/v1/downloads"):
        async with http.get(path) as r:
            active = await r.json()
        assert set(active) == {"active_downloads", "total_active", "timestamp"}
        assert active["total_active"] == len(active["active_downloads"])
        assert isinstance(active["timestamp"], int) and active["timestamp"] > 1_700_000_000_000
    async with http.get("/download-progress/nope") as r:
        assert r.status == 404
    async with http.get("/download-progress/bad%20id!") as r:
        assert r.status == 400
    async with asyncio.timeout(30):
        while True:
            async with http.get(f"/download-progress/{task_id}") as r:
                body = await r.json()
            if body["status"] == "completed":
                break
            await asyncio.sleep(0.1)
    assert body["progress"]["percentage"] == 100.0
    assert body["progress"]["downloaded_bytes"] == 6 * MiB
    async with http.get("/downloads") as r:
        assert (await r.json())["total_active"] == 0
