"""On success ``get`` prints the path of each file a program can open: a Hugging Face file's
path in the snapshot folder, an Ollama model's name and weights blob, a URL's file; and the
same as ``paths`` in its JSON."""

from __future__ import annotations

import asyncio
import hashlib
import socket
from pathlib import Path

import pytest
from clikit import run
from hubkit import build_hub

from downloader.sources.hfcache import storage_folder
from downloader.testing.modelfiles import gguf_bytes
from downloader.testing.ollama import MODEL_LAYER, Registry
from downloader.testing.origin import Origin


@pytest.fixture
async def hub(tmp_path: Path):
    hub = await asyncio.to_thread(build_hub, tmp_path / "hub")
    async with hub:
        yield hub


def sha256(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


async def test_a_hugging_face_download_prints_each_file_s_snapshot_path(
    tmp_path: Path, hub
) -> None:
    cache = tmp_path / "hf"
    env = {"HF_ENDPOINT": hub.endpoint, "HF_HUB_CACHE": str(cache), "NO_COLOR": "1"}
    got = await run(tmp_path / "home", "get", "hf://org/tiny/*.gguf", **env)
    assert got.code == 0, got.stderr
    snapshot = storage_folder(cache, "org/tiny") / "snapshots" / hub.repos["org/tiny"].refs["main"]
    wanted = [str(snapshot / name) for name in ("model-Q4_K_M.gguf", "model-Q8_0.gguf")]
    assert got.stdout.splitlines()[-3:] == [  # after the progress lines
        "✓ task 1: hf://org/tiny/*.gguf",
        *(f"  {p}" for p in wanted),
    ]
    again = await run(tmp_path / "home2", "get", "hf://org/tiny/*.gguf", "--json", **env)
    assert again.code == 0, again.stderr
    assert sorted(again.json()["paths"]) == wanted
    for path in wanted:  # a script can open them: the published bytes
        assert sha256(path) == hub.file("org/tiny", Path(path).name).lfs_sha256


async def test_a_url_download_prints_its_file(tmp_path: Path) -> None:
    async with Origin({"m.bin": b"m" * 1000}) as origin:
        got = await run(
            tmp_path / "home", "get", origin.url("m.bin"), "--dest", f"{tmp_path}/", NO_COLOR="1"
        )
        listed = await run(tmp_path / "home", "show", "1", "--json")
    assert got.code == 0, got.stderr
    assert got.stdout.splitlines()[-1:] == [
        f"✓ task 1: {origin.url('m.bin')} → {tmp_path / 'm.bin'}"
    ]
    assert listed.json()["paths"] == [str(tmp_path / "m.bin")]


async def test_an_ollama_download_prints_its_run_name_and_weights_blob(tmp_path: Path) -> None:
    weights = gguf_bytes(size=4000)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        no_daemon = f"127.0.0.1:{s.getsockname()[1]}"
    async with Registry(tmp_path / "registry") as registry:
        registry.add_model("library/tiny", [(MODEL_LAYER, weights)], tag="1b")
        env = {
            "MODELHAUL_OLLAMA_REGISTRY": registry.url,
            "OLLAMA_MODELS": str(tmp_path / "ollama"),
            "OLLAMA_HOST": no_daemon,
            "NO_COLOR": "1",
        }
        got = await run(tmp_path / "home", "get", "ollama://tiny:1b", **env)
        again = await run(tmp_path / "home2", "get", "ollama://tiny:1b", "--json", **env)
    assert got.code == 0, got.stderr
    name = f"{registry.url.split('://', 1)[1]}/library/tiny:1b"
    blob = tmp_path / "ollama" / "blobs" / f"sha256-{hashlib.sha256(weights).hexdigest()}"
    assert got.stdout.splitlines()[-2:] == [
        f"✓ task 1: ollama://tiny:1b → {name} ('ollama run {name}')",
        f"  {blob}",
    ]
    assert blob.read_bytes() == weights
    assert again.code == 0, again.stderr
    assert (again.json()["ollama_name"], again.json()["paths"]) == (name, [str(blob)])
