"""Cache management, the registry and the checks before a download, on real folders, a real
ledger and a real small filesystem."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from clikit import run
from managerkit import manager_settings

from downloader import registry
from downloader.cache import CacheError, ModelCache
from downloader.errors import SpecError
from downloader.manager import DownloadManager
from downloader.preflight import validate
from downloader.settings import MiB
from downloader.specs import parse_spec
from downloader.testing.modelfiles import gguf_bytes
from downloader.testing.origin import Origin

KB = 1000


def settings_in(tmp_path: Path):
    return manager_settings(
        tmp_path / "home",
        hf_cache=tmp_path / "hf",
        ollama_models=tmp_path / "ollama",
        downloads=tmp_path / "downloads",
    )


def hf_repo(root: Path, repo: str, blob: bytes) -> Path:
    """A repo as huggingface_hub lays it out: a blob, symlinks to it from two snapshots, and
    a hard link to it (as some tools make) in a third."""
    folder = root / f"models--{repo.replace('/', '--')}"
    (folder / "blobs").mkdir(parents=True)
    (folder / "blobs" / "abc123").write_bytes(blob)
    for commit in ("c1", "c2"):
        (folder / "snapshots" / commit).mkdir(parents=True)
        (folder / "snapshots" / commit / "model.gguf").symlink_to("../../blobs/abc123")
    (folder / "snapshots" / "c3").mkdir(parents=True)
    os.link(folder / "blobs" / "abc123", folder / "snapshots" / "c3" / "model.gguf")
    (folder / "refs").mkdir()
    (folder / "refs" / "main").write_text("c1")
    return folder


def ollama_model(root: Path, name: str, tag: str, layers: dict[str, bytes]) -> None:
    (root / "blobs").mkdir(parents=True, exist_ok=True)
    entries = []
    for digest, data in layers.items():
        (root / "blobs" / f"sha256-{digest}").write_bytes(data)
        entries.append(
            {"mediaType": "application/vnd.ollama.image.model", "digest": f"sha256:{digest}"}
        )
    manifest = root / "manifests" / "registry.ollama.ai" / "library" / name / tag
    manifest.parent.mkdir(parents=True, exist_ok=True)
    manifest.write_text(json.dumps({"schemaVersion": 2, "layers": entries}))


async def test_sizes_count_each_blob_once_across_links_and_shared_layers(tmp_path: Path) -> None:
    s = settings_in(tmp_path)
    hf_repo(s.hf_cache_dir, "org/a", b"x" * (300 * KB))
    shared = b"s" * (500 * KB)
    ollama_model(s.ollama_models_dir, "m1", "latest", {"aa": shared, "bb": b"1" * (10 * KB)})
    ollama_model(s.ollama_models_dir, "m2", "q4", {"aa": shared, "cc": b"2" * (20 * KB)})
    async with ModelCache(s) as cache:
        models = {m.name: m for m in await cache.cached_models()}
        refs = len("c1")  # refs/main
        assert models["org/a"].size == 300 * KB + refs  # 2 symlinks + 1 hard link: one blob
        manifests = sum(
            p.stat().st_size for p in (s.ollama_models_dir / "manifests").rglob("*") if p.is_file()
        )
        assert models["m1:latest"].size + models["m2:q4"].size > 530 * KB + manifests
        assert await cache.cache_size() == 300 * KB + refs + 530 * KB + manifests
        assert await cache.is_cached("hf://org/a/model.gguf")
        assert await cache.local_path("hf://org/a/model.gguf") == (
            s.hf_cache_dir / "models--org--a" / "snapshots" / "c1" / "model.gguf"
        )
        assert await cache.is_cached("ollama://m2:q4") and not await cache.is_cached("ollama://m3")
        # Made by hand here, so another tool's models: deleting them takes others=True.
        await cache.delete("ollama://m1", others=True)  # shared layer stays for m2
        assert (s.ollama_models_dir / "blobs" / "sha256-aa").exists()
        assert not (s.ollama_models_dir / "blobs" / "sha256-bb").exists()
        with pytest.raises(CacheError, match="not in the cache"):
            await cache.delete("ollama://m1")


async def test_eviction_is_least_recently_used_first_and_spares_held_models(tmp_path: Path) -> None:
    s = settings_in(tmp_path)
    s.download_dir.mkdir(parents=True)
    for name in ("a.bin", "b.bin", "c.bin", "d.bin"):
        (s.download_dir / name).write_bytes(b"z" * (100 * KB))
        os.utime(s.download_dir / name, (500, 500))  # downloaded long before any use
    async with (
        Origin({"d.bin": b"d" * (100 * KB)}) as origin,
        DownloadManager(s, autostart=False) as m,
    ):
        held = await m.add(origin.url("d.bin"), dest=s.download_dir / "d.bin", paused=True)
        async with ModelCache(s, m.ledger) as cache:
            # Used (opened) in the order d, b, a, c: d is oldest but a paused task holds it.
            for i, name in enumerate(("d.bin", "b.bin", "a.bin", "c.bin")):
                await m.ledger.uses.touch(f"file:{s.download_dir / name}", at=1_000 + i)
            result = await cache.evict_to_fit(250 * KB, others=True)  # (not modelhaul's)
            assert [x.name for x in result.evicted] == ["b.bin", "a.bin"]
            assert result.fits and result.size_after == 200 * KB
            assert sorted(p.name for p in s.download_dir.iterdir()) == ["c.bin", "d.bin"]
            with pytest.raises(CacheError, match=f"task {held.id}"):
                await cache.delete(origin.url("d.bin"))
            assert [x.name for x in await cache.clear_cache(others=True)] == ["c.bin"]
            assert [p.name for p in s.download_dir.iterdir()] == ["d.bin"]


async def test_the_cli_lists_with_gguf_headers_and_evicts(tmp_path: Path) -> None:
    s = settings_in(tmp_path)
    env = {
        "HF_HUB_CACHE": str(s.hf_cache_dir),
        "MODELHAUL_DOWNLOADS": str(s.download_dir),
        "OLLAMA_MODELS": str(s.ollama_models_dir),
    }
    hf_repo(s.hf_cache_dir, "org/q", gguf_bytes(size=400_000, architecture="qwen2", file_type=15))
    listed = await run(s.home, "cache", "ls", "--json", **env)
    assert listed.code == 0, listed.stderr
    [entry] = listed.json()
    assert entry["name"] == "org/q" and entry["format"] == "gguf"
    assert (
        entry["header"]["architecture"] == "qwen2" and entry["header"]["quantization"] == "Q4_K_M"
    )
    args = ("cache", "evict", "--max-size", "1K", "--all", "--yes", "--json")  # by hand: --all
    evicted = await run(s.home, *args, **env)
    assert evicted.code == 0 and [e["name"] for e in evicted.json()["evicted"]] == ["org/q"]
    assert not (s.hf_cache_dir / "models--org--q").exists()


def test_aliases_work_as_specs_and_the_registry_filters() -> None:
    spec = parse_spec("llama3.2-1b")
    assert (spec.provider, spec.source) == ("huggingface", "bartowski/Llama-3.2-1B-Instruct-GGUF")
    assert parse_spec("ollama://llama3.2-1b").source == "llama3.2:1b"
    assert parse_spec("mlx://llama3.2-1b").source == "mlx-community/Llama-3.2-1B-Instruct-4bit"
    embedders = registry.models(capability="embeddings")
    assert embedders and all(registry.Capability.EMBEDDINGS in m.capabilities for m in embedders)
    assert all(m.mlx for m in registry.models(provider="mlx"))
    assert all(m.recommended for m in registry.recommended())
    assert registry.info("qwen2.5-coder-7b").context_window == 32768
    with pytest.raises(SpecError, match=r"did you mean llama3\.2-1b"):
        parse_spec("llama3.2-1c")


@pytest.fixture
def small_disk(tmpfs) -> Path:
    """An 8 MiB tmpfs."""
    return tmpfs("8m")


async def test_get_refuses_a_download_the_disk_cannot_hold_naming_both_numbers(
    tmp_path: Path, small_disk: Path
) -> None:
    data = b"m" * (12 * MiB)
    async with Origin({"big.bin": data}) as origin:
        verdict = await validate(
            origin.url("big.bin"), settings=settings_in(tmp_path), dest=str(small_disk / "big.bin")
        )
        got = await run(
            tmp_path / "home", "get", origin.url("big.bin"), "-o", str(small_disk / "big.bin")
        )
        served = origin.served
    assert not verdict.ok and verdict.estimate.total_bytes == len(data)
    assert verdict.free_bytes <= 8 * MiB < verdict.needed_bytes
    assert got.code == 1
    [line] = got.stderr.strip().splitlines()
    assert f"not enough disk space at {small_disk}" in line
    assert f"needs {verdict.needed_bytes / 1e6:.1f} MB ({verdict.needed_bytes} bytes" in line
    assert f"({verdict.free_bytes} bytes) is free" in line
    assert served == 2  # one one-byte probe each (validate above, get): nothing downloaded
    assert list(small_disk.iterdir()) == []
