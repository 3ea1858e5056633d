"""Bytes already on this machine: the same GGUF through Hugging Face and Ollama is fetched
once and shared by one inode, found through the content index by its SHA-256; an index
entry that no longer holds is dropped and the download goes on; a user's file is kept."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import os
import socket
import tempfile
from pathlib import Path

import pytest
from clikit import run as cli
from hubkit import real_client
from managerkit import manager_settings

from downloader import DownloadManager, TaskState
from downloader.settings import MiB
from downloader.sources.hfcache import storage_folder
from downloader.testing.hub import Hub
from downloader.testing.modelfiles import gguf_bytes
from downloader.testing.ollama import MODEL_LAYER, Registry

GGUF = gguf_bytes(size=3 * MiB + 77, seed=18)
SHA = hashlib.sha256(GGUF).hexdigest()
REPO, FILE, MODEL, TAG = "org/shared", "model-Q4_K_M.gguf", "org/shared", "q4"


@pytest.fixture
async def stores(tmp_path: Path):
    hub = Hub(tmp_path / "hub")
    await asyncio.to_thread(hub.add_repo, REPO, {FILE: GGUF, "config.json": b"{}"})
    registry = Registry(tmp_path / "registry")
    registry.add_model(MODEL, [(MODEL_LAYER, GGUF), ("application/x-other", b"t")], tag=TAG)
    async with hub, registry:
        yield hub, registry


def settings(tmp_path: Path, hub: Hub, registry: Registry):
    with socket.socket() as s:  # no Ollama daemon answers: pulls go straight to the registry
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return manager_settings(
        tmp_path / "home",
        hf_endpoint=hub.endpoint,
        hf_cache=tmp_path / "hfcache",
        ollama_registry=registry.url,
        ollama_models=tmp_path / "ollama",
        ollama_host=f"http://127.0.0.1:{port}",
    )


def hf_blob(tmp_path: Path) -> Path:
    return storage_folder(tmp_path / "hfcache", REPO) / "blobs" / SHA


def ollama_blob(tmp_path: Path) -> Path:
    return tmp_path / "ollama" / "blobs" / f"sha256-{SHA}"


async def get(m: DownloadManager, spec: str):
    task = await m.add(spec)
    done = await m.wait(task.id)
    assert done.state is TaskState.COMPLETED, done.error
    return done


async def history(m: DownloadManager, task_id: int) -> list[str]:
    return [e.reason for e in await m.ledger.tasks.events(task_id)]


HF_SPEC, OLLAMA_SPEC = f"hf://{REPO}/{FILE}", f"ollama://{MODEL}:{TAG}"


async def test_hf_then_ollama_shares_one_inode_and_fetches_nothing_again(
    tmp_path: Path, stores
) -> None:
    hub, registry = stores
    async with DownloadManager(settings(tmp_path, hub, registry)) as m:
        await get(m, HF_SPEC)
        assert hub.cdn.served >= len(GGUF)
        task = await get(m, OLLAMA_SPEC)
        notes = await history(m, task.id)
    assert registry.blob_host.served_by_file.get(f"sha256-{SHA}", 0) == 0
    assert os.stat(hf_blob(tmp_path)).st_ino == os.stat(ollama_blob(tmp_path)).st_ino
    assert any(f"reused {hf_blob(tmp_path)} (hard link)" in n for n in notes), notes
    manifest = tmp_path / "ollama" / "manifests" / registry.host / MODEL / TAG
    assert manifest.read_bytes() == registry.models[(MODEL, TAG)].manifest


async def test_ollama_then_hf_shares_one_inode_and_huggingface_hub_finds_it_offline(
    tmp_path: Path, stores
) -> None:
    hub, registry = stores
    async with DownloadManager(settings(tmp_path, hub, registry)) as m:
        await get(m, OLLAMA_SPEC)
        assert registry.blob_host.served_by_file[f"sha256-{SHA}"] >= len(GGUF)
        task = await get(m, HF_SPEC)
        notes = await history(m, task.id)
    assert hub.cdn.served == 0
    assert os.stat(hf_blob(tmp_path)).st_ino == os.stat(ollama_blob(tmp_path)).st_ino
    assert any(f"reused {ollama_blob(tmp_path)}" in n for n in notes), notes
    code = (
        "import huggingface_hub, sys\n"
        f"p = huggingface_hub.hf_hub_download({REPO!r}, {FILE!r}, local_files_only=True)\n"
        "sys.stdout.write(p)\n"
    )
    found = await asyncio.to_thread(
        real_client, code, HF_HUB_OFFLINE="1", HF_HUB_CACHE=str(tmp_path / "hfcache")
    )
    assert found.returncode == 0, found.stderr
    assert Path(found.stdout).read_bytes() == GGUF


@pytest.mark.parametrize("damage", ["deleted", "changed"])
async def test_a_stale_index_entry_is_dropped_and_the_file_is_downloaded(
    tmp_path: Path, stores, damage: str
) -> None:
    hub, registry = stores
    async with DownloadManager(settings(tmp_path, hub, registry)) as m:
        await get(m, HF_SPEC)
        blob = hf_blob(tmp_path)
        if damage == "deleted":
            blob.unlink()
        else:  # same size, other bytes: only the digest can tell
            blob.write_bytes(bytes(b ^ 1 for b in GGUF))
        task = await get(m, OLLAMA_SPEC)
        notes = await history(m, task.id)
        left = await m.ledger.contents.find(SHA)
    assert registry.blob_host.served_by_file[f"sha256-{SHA}"] >= len(GGUF)
    assert ollama_blob(tmp_path).read_bytes() == GGUF
    assert any(f"not reusing {blob}" in n for n in notes), notes
    assert [e.path for e in left] == [str(ollama_blob(tmp_path))]


async def test_a_user_s_different_file_at_the_destination_is_never_replaced(
    tmp_path: Path, stores
) -> None:
    hub, registry = stores
    mine = tmp_path / "mine" / FILE
    mine.parent.mkdir()
    mine.write_bytes(b"my own notes, not a model")
    async with DownloadManager(settings(tmp_path, hub, registry)) as m:
        await get(m, OLLAMA_SPEC)
        task = await m.add(f"hf://{REPO}/{FILE}", dest=str(mine.parent))
        done = await m.wait(task.id)
    assert done.state is TaskState.FAILED and str(mine) in (done.error or "")
    assert mine.read_bytes() == b"my own notes, not a model"
    assert os.stat(mine).st_ino != os.stat(ollama_blob(tmp_path)).st_ino


async def test_cache_counts_the_shared_inode_once_and_rm_of_one_name_keeps_the_other(
    tmp_path: Path, stores
) -> None:
    hub, registry = stores
    async with DownloadManager(settings(tmp_path, hub, registry)) as m:
        await get(m, HF_SPEC)
        await get(m, OLLAMA_SPEC)
    env = {
        "HF_HUB_CACHE": str(tmp_path / "hfcache"),
        "OLLAMA_MODELS": str(tmp_path / "ollama"),
        "MODELHAUL_DOWNLOADS": str(tmp_path / "downloads"),
        "NO_COLOR": "1",
    }
    du = await cli(tmp_path / "home", "cache", "du", "--json", **env)
    assert du.code == 0, du.stderr
    assert len(GGUF) <= du.json()["bytes"] < len(GGUF) + 64 * 1024  # not twice the GGUF
    rm = await cli(tmp_path / "home", "cache", "rm", REPO, "--yes", **env)
    assert rm.code == 0, rm.stderr + rm.stdout
    assert not hf_blob(tmp_path).exists()
    assert ollama_blob(tmp_path).read_bytes() == GGUF
    listed = await cli(tmp_path / "home", "cache", "ls", "--json", **env)
    assert [e["provider"] for e in listed.json()] == ["ollama"], listed.stdout


async def test_on_another_filesystem_the_file_is_copied_and_checked(tmp_path: Path, stores) -> None:
    hub, registry = stores
    other = Path("/dev/shm")
    if not other.is_dir() or other.stat().st_dev == tmp_path.stat().st_dev:
        pytest.skip("no second filesystem (tmpfs at /dev/shm) to copy across")
    with tempfile.TemporaryDirectory(dir=other, prefix="modelhaul-reuse-") as store:
        values = settings(tmp_path, hub, registry)
        values = dataclasses.replace(values, ollama_models=Path(store))
        async with DownloadManager(values) as m:
            await get(m, HF_SPEC)
            task = await get(m, OLLAMA_SPEC)
            notes = await history(m, task.id)
        blob = Path(store) / "blobs" / f"sha256-{SHA}"
        assert blob.read_bytes() == GGUF
        assert registry.blob_host.served_by_file.get(f"sha256-{SHA}", 0) == 0
    assert any(f"reused {hf_blob(tmp_path)} (reflink)" in n or "(copy)" in n for n in notes)


def cache_env(tmp_path: Path) -> dict[str, str]:
    return {
        "HF_HUB_CACHE": str(tmp_path / "hfcache"),
        "OLLAMA_MODELS": str(tmp_path / "ollama"),
        "MODELHAUL_DOWNLOADS": str(tmp_path / "downloads"),
        "NO_COLOR": "1",
    }


async def test_cache_scan_indexes_another_tool_s_ollama_pull_and_hf_reuses_it(
    tmp_path: Path, stores
) -> None:
    hub, registry = stores
    ollama = tmp_path / "ollama"
    (ollama / "blobs").mkdir(parents=True)
    ollama_blob(tmp_path).write_bytes(GGUF)  # as `ollama pull` leaves it
    short = ollama / "blobs" / f"sha256-{'1' * 64}"  # shorter than its manifest says
    short.write_bytes(b"x")
    layers = [
        {"mediaType": MODEL_LAYER, "digest": f"sha256:{SHA}", "size": len(GGUF)},
        {"mediaType": "application/x-other", "digest": f"sha256:{'1' * 64}", "size": 2},
    ]
    manifest = ollama / "manifests" / "registry.ollama.ai" / "library" / "theirs" / "latest"
    manifest.parent.mkdir(parents=True)
    manifest.write_text(json.dumps({"schemaVersion": 2, "layers": layers}))
    liar = storage_folder(tmp_path / "hfcache", "other/liar") / "blobs" / ("2" * 64)
    liar.parent.mkdir(parents=True)
    liar.write_bytes(b"not what my name says")
    scanned = await cli(tmp_path / "home", "cache", "scan", "--json", **cache_env(tmp_path))
    assert scanned.code == 0, scanned.stderr
    assert scanned.json() == {"indexed": 1, "hashed": 1, "unchanged": 0, "mismatched": [str(liar)]}
    again = await cli(tmp_path / "home", "cache", "scan", "--json", **cache_env(tmp_path))
    assert again.json()["unchanged"] == 1 and again.json()["hashed"] == 1
    async with DownloadManager(settings(tmp_path, hub, registry)) as m:
        await get(m, HF_SPEC)
    assert hub.cdn.served == 0
    assert os.stat(hf_blob(tmp_path)).st_ino == os.stat(ollama_blob(tmp_path)).st_ino
