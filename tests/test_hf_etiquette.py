"""Hugging Face cache etiquette: a paused download leaves the cache as huggingface_hub itself
would (``blobs/<etag>.incomplete``, a ``snapshots/`` folder), so its scanner and ``hf cache
ls`` stay clean; a download paused under the old ``.part`` name still resumes;
``HF_HUB_OFFLINE`` serves what the cache holds and names what it does not."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import pytest
from clikit import run as cli
from conftest import python_env
from hubkit import build_hub, real_client, sha256
from managerkit import manager_settings, until

from downloader import DownloadManager, TaskState
from downloader.settings import MiB
from downloader.sources.hfcache import storage_folder
from downloader.testing.hub import Hub
from downloader.testing.modelfiles import gguf_bytes

HF = str(Path(sys.executable).parent / "hf")

SCAN = (
    "import json\n"
    "from huggingface_hub import scan_cache_dir\n"
    "info = scan_cache_dir()\n"
    "print(json.dumps({\n"
    "    'warnings': [str(w) for w in info.warnings],\n"
    "    'incomplete': sorted(str(f.file_path) for f in info.incomplete_files),\n"
    "    'repos': {r.repo_id: sorted(f.file_name for v in r.revisions for f in v.files)\n"
    "              for r in info.repos},\n"
    "}))\n"
)


@pytest.fixture
async def hub(tmp_path: Path):
    hub = Hub(tmp_path / "hub", cdn_throttle=MiB)
    await asyncio.to_thread(
        hub.add_repo,
        "org/big",
        {"model.gguf": gguf_bytes(size=16 * MiB, seed=5), "config.json": b"{}"},
    )
    async with hub:
        yield hub


def settings(tmp_path: Path, hub: Hub):
    return manager_settings(tmp_path / "home", hf_endpoint=hub.endpoint, hf_cache=tmp_path / "hf")


def scan(cache: Path) -> dict:
    """What the real huggingface_hub's ``scan_cache_dir()`` finds."""
    result = real_client(SCAN, HF_HUB_CACHE=str(cache))
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def hf_cache_ls(cache: Path) -> str:
    """What ``hf cache ls`` prints (both streams)."""
    result = subprocess.run(
        [HF, "cache", "ls"],
        capture_output=True,
        text=True,
        env=python_env(HF_HUB_CACHE=str(cache), NO_COLOR="1"),
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout + result.stderr


async def paused_download(m: DownloadManager, at_least: int):
    task = await m.add("hf://org/big/model.gguf")
    await until(m.ledger, task.id, lambda t: t.downloaded_bytes >= at_least)
    await m.pause(task.id)
    return await until(m.ledger, task.id, lambda t: t.state is TaskState.PAUSED)


async def test_a_paused_download_is_an_incomplete_blob_to_huggingface_hub_s_scanner(
    tmp_path: Path, hub: Hub
) -> None:
    cache = tmp_path / "hf"
    blob = storage_folder(cache, "org/big") / "blobs" / hub.file("org/big", "model.gguf").lfs_sha256
    async with DownloadManager(settings(tmp_path, hub)) as m:
        task = await paused_download(m, 2 * MiB)
        paused = await asyncio.to_thread(scan, cache)
        listed = await asyncio.to_thread(hf_cache_ls, cache)
        partial_only = not blob.exists() and not blob.with_name(blob.name + ".part").exists()
        assert await m.resume(task.id)
        done = await m.wait(task.id)
    assert paused["warnings"] == [] and "inconsistencies" not in listed, (paused, listed)
    assert paused["incomplete"] == [f"{blob}.incomplete"]
    assert partial_only
    assert done.state is TaskState.COMPLETED, done.error
    finished = await asyncio.to_thread(scan, cache)
    assert finished == {"warnings": [], "incomplete": [], "repos": {"org/big": ["model.gguf"]}}
    assert sha256(blob) == hub.file("org/big", "model.gguf").lfs_sha256


async def test_a_download_paused_under_the_old_part_name_resumes_from_its_chunks(
    tmp_path: Path, hub: Hub
) -> None:
    sha = hub.file("org/big", "model.gguf").lfs_sha256
    async with DownloadManager(settings(tmp_path, hub)) as m:
        task = await paused_download(m, 4 * MiB)
        [record] = await m.files(task.id)
        blob = Path(record.local_path)
        # What a modelhaul from before the huggingface_hub naming left behind: the bytes in
        # `<etag>.part`, and a file record that names no suffix.
        blob.with_name(f"{sha}.incomplete").rename(blob.with_name(f"{sha}.part"))
        old = {k: v for k, v in record.meta.items() if k != "partial_suffix"}
        await m.ledger.files.update(record.id, meta=old)
        kept = (await m.get(task.id)).downloaded_bytes
        served_before = hub.cdn.served_by_file[sha]
        assert await m.resume(task.id)
        done = await m.wait(task.id)
        served = hub.cdn.served_by_file[sha] - served_before
    assert done.state is TaskState.COMPLETED, done.error
    size = hub.file("org/big", "model.gguf").source.stat().st_size
    assert kept >= 4 * MiB and served == size - kept  # resumed: only what was missing
    assert sha256(blob) == sha and not blob.with_name(f"{sha}.part").exists()


@pytest.fixture
async def tiny_hub(tmp_path: Path):
    hub = await asyncio.to_thread(build_hub, tmp_path / "tiny-hub")
    async with hub:
        yield hub


def hub_requests(hub: Hub) -> int:
    return len(hub.log) + len(hub.cdn.log)


async def test_offline_a_cached_spec_completes_at_once_without_the_network(
    tmp_path: Path, tiny_hub: Hub
) -> None:
    home, cache = tmp_path / "home", tmp_path / "hf"
    env = {"HF_ENDPOINT": tiny_hub.endpoint, "HF_HUB_CACHE": str(cache)}
    online = await cli(home, "get", "hf://org/tiny/model-Q4_K_M.gguf", **env)
    assert online.code == 0, online.stderr
    before = hub_requests(tiny_hub)
    offline = await cli(
        tmp_path / "home2",
        "get",
        "hf://org/tiny/model-Q4_K_M.gguf",
        "--json",
        HF_HUB_OFFLINE="1",
        **env,
    )
    assert offline.code == 0, offline.stderr
    assert hub_requests(tiny_hub) == before  # not one request
    task = offline.json()
    assert task["state"] == "completed"
    [file] = task["files"]
    assert file["sha256"] == tiny_hub.file("org/tiny", "model-Q4_K_M.gguf").lfs_sha256


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (
            "hf://org/tiny/model-Q8_0.gguf",
            "File 'model-Q8_0.gguf' of model 'org/tiny' is not in the cache and HF_HUB_OFFLINE "
            "is set",
        ),
        (
            "hf://org/tiny@v1.0/config.json",
            "Model 'org/tiny' at revision 'v1.0' is not in the cache and HF_HUB_OFFLINE is set",
        ),
        ("hf://org/other", "Model 'org/other' is not in the cache and HF_HUB_OFFLINE is set"),
    ],
)
async def test_offline_what_the_cache_does_not_hold_fails_saying_so(
    tmp_path: Path, tiny_hub: Hub, spec: str, message: str
) -> None:
    home, cache = tmp_path / "home", tmp_path / "hf"
    env = {"HF_ENDPOINT": tiny_hub.endpoint, "HF_HUB_CACHE": str(cache)}
    online = await cli(home, "get", "hf://org/tiny/model-Q4_K_M.gguf", **env)
    assert online.code == 0, online.stderr
    before = hub_requests(tiny_hub)
    offline = await cli(home, "get", spec, HF_HUB_OFFLINE="1", **env)
    assert offline.code == 1
    assert message in offline.stderr, offline.stderr
    assert hub_requests(tiny_hub) == before


async def test_a_file_already_in_the_cache_completes_at_once_for_another_ledger(
    tmp_path: Path, tiny_hub: Hub
) -> None:
    env = {"HF_ENDPOINT": tiny_hub.endpoint, "HF_HUB_CACHE": str(tmp_path / "hf")}
    first = await cli(tmp_path / "home", "get", "hf://org/tiny/model-Q8_0.gguf", **env)
    assert first.code == 0, first.stderr
    sent = len(tiny_hub.cdn.log)
    again = await cli(tmp_path / "other-home", "get", "hf://org/tiny/model-Q8_0.gguf", **env)
    assert again.code == 0, again.stderr  # its snapshot link is already there: kept
    assert len(tiny_hub.cdn.log) == sent  # no byte fetched twice
