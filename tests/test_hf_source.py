"""Hugging Face (and MLX) downloads through our engine from the local hub: every form of
spec, the Hub's errors as seed 001 words them, the token kept off the CDN, and a cache
that the real huggingface_hub reads back."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from hubkit import TOKEN, build_hub, real_client, sha256
from managerkit import manager_settings

from downloader import DownloadManager, DownloadStatus, TaskState, download_model
from downloader.preflight import estimate_download_size
from downloader.settings import MiB
from downloader.sources.hfcache import storage_folder
from downloader.testing.hub import Hub


@pytest.fixture
async def hub(tmp_path: Path):
    hub = await asyncio.to_thread(build_hub, tmp_path / "hub")
    async with hub:
        yield hub


def hf_settings(tmp_path: Path, hub, **overrides):
    return manager_settings(
        tmp_path / "home", hf_endpoint=hub.endpoint, hf_cache=tmp_path / "hfcache", **overrides
    )


async def run(*args, **kwargs):
    return [p async for p in download_model(*args, **kwargs)]


def snapshot(tmp_path: Path, hub, repo: str, revision: str = "main") -> Path:
    commit = hub.repos[repo].refs[revision]
    return storage_folder(tmp_path / "hfcache", repo) / "snapshots" / commit


async def test_a_single_gguf_file_is_byte_identical_and_verified_against_lfs_sha256(
    tmp_path: Path, hub
) -> None:
    settings = hf_settings(tmp_path, hub)
    seen = await run("huggingface", "org/tiny", filename="model-Q4_K_M.gguf", settings=settings)
    assert seen[-1].status is DownloadStatus.COMPLETE, seen[-1].message
    published = hub.file("org/tiny", "model-Q4_K_M.gguf")
    got = snapshot(tmp_path, hub, "org/tiny") / "model-Q4_K_M.gguf"
    assert sha256(got) == published.lfs_sha256
    assert got.is_symlink() and got.resolve().parent.name == "blobs"
    async with DownloadManager(settings, autostart=False) as m:
        [record] = await m.files(seen[-1].task_id)
    assert record.expected_sha256 == record.sha256 == published.lfs_sha256


async def test_a_whole_snapshot_lands_in_the_cache_with_refs_and_links(tmp_path: Path, hub) -> None:
    seen = await run("huggingface", "org/tiny", settings=hf_settings(tmp_path, hub))
    last = seen[-1]
    assert last.status is DownloadStatus.COMPLETE and last.files_completed == last.total_files == 5
    assert any(p.current_file for p in seen)
    snap = snapshot(tmp_path, hub, "org/tiny")
    for path in ("config.json", "README.md", "tokenizer/tokenizer.json", "model-Q8_0.gguf"):
        assert (snap / path).read_bytes() == hub.file("org/tiny", path).source.read_bytes()
    folder = storage_folder(tmp_path / "hfcache", "org/tiny")
    assert (folder / "refs" / "main").read_text() == hub.repos["org/tiny"].refs["main"]


async def test_a_glob_selects_only_matching_files(tmp_path: Path, hub) -> None:
    settings = hf_settings(tmp_path, hub)
    async with DownloadManager(settings) as m:
        task = await m.add("hf://org/tiny/*Q4_K_M.gguf")
        done = await m.wait(task.id)
        files = await m.files(task.id)
    assert done.state is TaskState.COMPLETED and [f.relpath for f in files] == ["model-Q4_K_M.gguf"]


async def test_a_pinned_revision_downloads_that_revision(tmp_path: Path, hub) -> None:
    seen = await run(
        "huggingface",
        "org/tiny",
        filename="config.json",
        revision="v1.0",
        settings=hf_settings(tmp_path, hub),
    )
    assert seen[-1].status is DownloadStatus.COMPLETE
    got = snapshot(tmp_path, hub, "org/tiny", "v1.0") / "config.json"
    assert got.read_bytes() == b'{"model_type": "old"}'
    folder = storage_folder(tmp_path / "hfcache", "org/tiny")
    assert (folder / "refs" / "v1.0").read_text() == hub.repos["org/tiny"].refs["v1.0"]


async def test_a_local_dir_gets_plain_files(tmp_path: Path, hub) -> None:
    seen = await run(
        "huggingface",
        "org/tiny",
        allow_patterns=["*.json"],
        dest=tmp_path / "flat",
        settings=hf_settings(tmp_path, hub),
    )
    assert seen[-1].status is DownloadStatus.COMPLETE
    got = sorted(
        p.relative_to(tmp_path / "flat").as_posix()
        for p in (tmp_path / "flat").rglob("*")
        if p.is_file()
    )
    assert got == ["config.json", "tokenizer/tokenizer.json"]
    assert not (tmp_path / "flat" / "config.json").is_symlink()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"model": "org/nope"}, "Model 'org/nope' not found on HuggingFace Hub"),
        (
            {"model": "org/gated"},
            "Model 'org/gated' requires authentication. Provide token parameter",
        ),
        (
            {"model": "org/tiny", "revision": "v9"},
            "Revision 'v9' not found for model 'org/tiny' on HuggingFace Hub",
        ),
        (
            {"model": "org/tiny", "filename": "nope.gguf"},
            "File 'nope.gguf' not found in model 'org/tiny' at revision 'main'",
        ),
    ],
)
async def test_hub_errors_reach_the_user_as_seed_001_messages(
    tmp_path: Path, hub, kwargs, message, monkeypatch
) -> None:
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "no-login"))  # no stored token either
    seen = await run("huggingface", settings=hf_settings(tmp_path, hub), **kwargs)
    assert seen[-1].status is DownloadStatus.ERROR
    assert seen[-1].message.startswith(message)


async def test_a_gated_repo_with_a_valid_token_succeeds_and_the_token_stays_off_the_cdn(
    tmp_path: Path, hub
) -> None:
    seen = await run("huggingface", "org/gated", token=TOKEN, settings=hf_settings(tmp_path, hub))
    assert seen[-1].status is DownloadStatus.COMPLETE, seen[-1].message
    got = snapshot(tmp_path, hub, "org/gated") / "model.gguf"
    assert sha256(got) == hub.file("org/gated", "model.gguf").lfs_sha256
    resolves = [r for r in hub.log if "/resolve/" in r.path]
    assert resolves and all(r.headers.get("Authorization") == f"Bearer {TOKEN}" for r in resolves)
    assert hub.cdn.log and all("Authorization" not in r.headers for r in hub.cdn.log)
    async with DownloadManager(hf_settings(tmp_path, hub), autostart=False) as m:
        task = await m.get(seen[-1].task_id)
    assert TOKEN not in json.dumps(task.options)


async def test_the_real_client_finds_our_downloads_in_its_cache_offline(
    tmp_path: Path, hub
) -> None:
    seen = await run("huggingface", "org/tiny", settings=hf_settings(tmp_path, hub))
    assert seen[-1].status is DownloadStatus.COMPLETE
    code = (
        "import json\n"
        "from huggingface_hub import hf_hub_download, snapshot_download\n"
        "print(json.dumps([hf_hub_download('org/tiny', 'model-Q4_K_M.gguf',"
        " local_files_only=True), snapshot_download('org/tiny', local_files_only=True)]))\n"
    )
    result = await asyncio.to_thread(
        real_client, code, HF_HUB_CACHE=str(tmp_path / "hfcache"), HF_HUB_OFFLINE="1"
    )
    assert result.returncode == 0, result.stderr
    file, folder = json.loads(result.stdout)
    assert Path(file) == snapshot(tmp_path, hub, "org/tiny") / "model-Q4_K_M.gguf"
    assert sha256(Path(file)) == hub.file("org/tiny", "model-Q4_K_M.gguf").lfs_sha256
    assert Path(folder) == snapshot(tmp_path, hub, "org/tiny")


async def test_a_safetensors_index_brings_its_shards_as_one_task(tmp_path: Path, hub) -> None:
    settings = hf_settings(tmp_path, hub)
    async with DownloadManager(settings) as m:
        task = await m.add("hf://org/sharded/model.safetensors.index.json")
        done = await m.wait(task.id)
        files = sorted(f.relpath for f in await m.files(task.id))
    assert done.state is TaskState.COMPLETED
    assert files == [
        "model-00001-of-00003.safetensors",
        "model-00002-of-00003.safetensors",
        "model-00003-of-00003.safetensors",
        "model.safetensors.index.json",
    ]


async def test_one_part_of_a_split_gguf_brings_all_parts(tmp_path: Path, hub) -> None:
    settings = hf_settings(tmp_path, hub)
    async with DownloadManager(settings) as m:
        task = await m.add("hf://org/split/big-00001-of-00003.gguf")
        done = await m.wait(task.id)
        files = sorted(f.relpath for f in await m.files(task.id))
    assert done.state is TaskState.COMPLETED
    assert files == [f"big-0000{i}-of-00003.gguf" for i in (1, 2, 3)]
    for i in (1, 2, 3):
        got = snapshot(tmp_path, hub, "org/split") / f"big-0000{i}-of-00003.gguf"
        name = f"big-0000{i}-of-00003.gguf"
        assert got.read_bytes() == hub.file("org/split", name).source.read_bytes()


async def test_mlx_repos_download_under_their_own_provider_name(tmp_path: Path, hub) -> None:
    seen = await run("mlx", "mlx-community/small", settings=hf_settings(tmp_path, hub))
    assert seen[-1].status is DownloadStatus.COMPLETE
    async with DownloadManager(hf_settings(tmp_path, hub), autostart=False) as m:
        task = await m.get(seen[-1].task_id)
    assert task.provider == "mlx" and task.label == "mlx://mlx-community/small"
    got = snapshot(tmp_path, hub, "mlx-community/small") / "weights.safetensors"
    assert sha256(got) == hub.file("mlx-community/small", "weights.safetensors").lfs_sha256


async def test_get_resolves_a_spec_once_its_checks_and_its_download_share_the_answer(
    tmp_path: Path, hub
) -> None:
    from clikit import run as cli

    home, cache = tmp_path / "home", tmp_path / "hfcache"
    done = await cli(
        home,
        "get",
        "hf://org/tiny/model-Q8_0.gguf",
        HF_ENDPOINT=hub.endpoint,
        HF_HUB_CACHE=str(cache),
    )
    assert done.code == 0, done.stderr
    infos = [r for r in hub.log if r.path.startswith("/api/models/org/tiny")]
    assert len(infos) == 1, [r.path for r in infos]  # the preflight's answer was used
    resolves = [r for r in hub.log if "/resolve/" in r.path]
    assert len({r.path for r in resolves}) == 1
    assert (snapshot(tmp_path, hub, "org/tiny") / "model-Q8_0.gguf").is_file()


async def test_a_glob_matching_an_index_selects_the_index_and_not_its_shards(
    tmp_path: Path, hub
) -> None:
    estimate = await estimate_download_size(
        "hf://org/sharded/*.json", settings=hf_settings(tmp_path, hub)
    )
    assert [name for name, _ in estimate.files] == ["model.safetensors.index.json"]


async def test_a_glob_matching_an_index_downloads_json_files_only(tmp_path: Path, hub) -> None:
    settings = hf_settings(tmp_path, hub)
    async with DownloadManager(settings) as m:
        task = await m.add("hf://org/sharded/*.json")
        done = await m.wait(task.id)
        files = [f.relpath for f in await m.files(task.id)]
    assert done.state is TaskState.COMPLETED, done.error
    assert files == ["model.safetensors.index.json"]


async def test_a_glob_matching_one_shard_asks_for_the_model_and_brings_its_companions(
    tmp_path: Path, hub
) -> None:
    settings = hf_settings(tmp_path, hub)
    async with DownloadManager(settings) as m:
        task = await m.add("hf://org/sharded/*-00002-of-00003.safetensors")
        done = await m.wait(task.id)
        files = sorted(f.relpath for f in await m.files(task.id))
    assert done.state is TaskState.COMPLETED, done.error
    assert files == [
        "model-00001-of-00003.safetensors",
        "model-00002-of-00003.safetensors",
        "model-00003-of-00003.safetensors",
        "model.safetensors.index.json",
    ]


async def test_the_largest_file_starts_first_and_small_ones_share_the_other_places(
    tmp_path: Path,
) -> None:
    hub = Hub(tmp_path / "hub")
    small = {f"a-{i:02}.json": bytes([i]) * 4096 for i in range(12)}
    big = bytes(range(256)) * (3 * MiB // 256)
    await asyncio.to_thread(hub.add_repo, "org/mixed", {**small, "zz-weights.bin": big})
    async with hub:
        seen = await run(
            "huggingface", "org/mixed", settings=hf_settings(tmp_path, hub, max_files=2)
        )
        resolved = [r.path.rsplit("/", 1)[-1] for r in hub.log if "/resolve/" in r.path]
    assert seen[-1].status is DownloadStatus.COMPLETE, seen[-1].message
    # Listed last, among the first two asked (two places): it does not wait for twelve small
    # files, and they go on beside it.
    first = list(dict.fromkeys(resolved))
    assert "zz-weights.bin" in first[:2], first
    assert set(resolved) == {*small, "zz-weights.bin"}
    snap = snapshot(tmp_path, hub, "org/mixed")
    assert (snap / "zz-weights.bin").read_bytes() == big
