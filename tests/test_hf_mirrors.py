"""MODELHAUL_HF_MIRRORS: a near copy of the Hub (an internal mirror) is asked for the bytes
before the Hub itself; the Hub's metadata still decides what the files are, its digests
check them, and a mirror that is down costs nothing but a note."""

from __future__ import annotations

import asyncio
import hashlib
import random
from pathlib import Path

import pytest
from managerkit import manager_settings

from downloader import DownloadManager, TaskState
from downloader.settings import MiB, Settings
from downloader.testing.hub import Hub

REPO, FILE = "org/near", "weights.safetensors.bin"
BIG = random.Random(1899).randbytes(24 * MiB + 99)


@pytest.fixture
async def hubs(tmp_path: Path):
    hub, near = Hub(tmp_path / "hub"), Hub(tmp_path / "near")
    files = {FILE: BIG, "config.json": b'{"a": 1}'}
    commits = [await asyncio.to_thread(h.add_repo, REPO, files) for h in (hub, near)]
    assert commits[0] == commits[1]  # the same content is the same commit
    async with hub, near:
        yield hub, near


def settings(tmp_path: Path, hub: Hub, *mirrors: str) -> Settings:
    return manager_settings(
        tmp_path / "home",
        hf_endpoint=hub.endpoint,
        hf_cache=tmp_path / "hfcache",
        hf_mirrors=tuple(mirrors),
    )


async def fetch(m: DownloadManager, token: str | None = None) -> list[str]:
    task = await m.add(f"hf://{REPO}", token=token)
    done = await m.wait(task.id)
    assert done.state is TaskState.COMPLETED, done.error
    return [e.reason for e in await m.ledger.tasks.events(task.id)]


def blob(tmp_path: Path) -> bytes:
    sha = hashlib.sha256(BIG).hexdigest()
    return (tmp_path / "hfcache" / "models--org--near" / "blobs" / sha).read_bytes()


async def test_the_near_mirror_serves_the_bytes(tmp_path: Path, hubs) -> None:
    hub, near = hubs
    async with DownloadManager(settings(tmp_path, hub, near.endpoint)) as m:
        notes = await fetch(m, token="hf_s3cret")
    assert blob(tmp_path) == BIG
    print("hub CDN", hub.cdn.served, "near CDN", near.cdn.served, notes)
    assert near.cdn.served >= 0.95 * len(BIG), (near.cdn.served, hub.cdn.served)
    assert hub.cdn.served <= 0.05 * len(BIG), (near.cdn.served, hub.cdn.served)
    # The Hub's token is the Hub's: the Hub gets it, the mirror never sees it.
    assert any(r.headers.get("Authorization") == "Bearer hf_s3cret" for r in hub.log)
    assert near.log and all("Authorization" not in r.headers for r in near.log)
    assert all("Authorization" not in r.headers for r in near.cdn.log)


async def test_a_near_mirror_that_is_down_costs_a_note(tmp_path: Path, hubs) -> None:
    hub, near = hubs
    endpoint = near.endpoint
    await near.stop()
    async with DownloadManager(settings(tmp_path, hub, endpoint)) as m:
        notes = await fetch(m)
    assert blob(tmp_path) == BIG
    assert hub.cdn.served >= len(BIG)
    assert any(f"mirror {endpoint}/{REPO}/resolve/" in n and "not used" in n for n in notes)
