"""Ollama through a running daemon (its NDJSON stream) or straight from the registry into
Ollama's own store."""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import signal
import socket
from pathlib import Path

import pytest
from managerkit import child, manager_settings, settled

from downloader import (
    DownloadManager,
    DownloadStatus,
    Settings,
    SpecError,
    TaskState,
    download_model,
)
from downloader.settings import MiB
from downloader.sources.ollama import parse_name
from downloader.testing.ollama import MODEL_LAYER, Daemon, Registry
from storage import open_ledger

TEMPLATE = "application/vnd.ollama.image.template"


@pytest.fixture
async def registry(tmp_path: Path):
    rng = random.Random(9)
    reg = Registry(tmp_path / "registry", blob_throttle=16 * MiB)
    async with reg:
        reg.add_model(
            "library/gemma3",
            [(MODEL_LAYER, rng.randbytes(12 * MiB)), (TEMPLATE, b"{{ .Prompt }}")],
            tag="1b",
        )
        reg.shared = rng.randbytes(6 * MiB)  # a layer two models share
        reg.add_model("library/tiny", [(MODEL_LAYER, reg.shared), (TEMPLATE, b"t1")], tag="a")
        reg.add_model("library/tiny", [(MODEL_LAYER, reg.shared), (TEMPLATE, b"t2")], tag="b")
        yield reg


def ollama_settings(tmp_path: Path, registry: Registry, **overrides) -> Settings:
    values = {
        "ollama_registry": registry.url,
        "ollama_models": tmp_path / "ollama",
        # no daemon answers here unless a test starts one and says so
        "ollama_host": f"http://127.0.0.1:{free_port()}",
    }
    return manager_settings(tmp_path / "home", **(values | overrides))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def run(*args, **kwargs):
    return [p async for p in download_model(*args, **kwargs)]


def store_files(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


# --- through the daemon -----------------------------------------------------------------------


async def test_through_the_daemon_progress_rises_per_layer_to_complete(
    tmp_path: Path, registry: Registry
) -> None:
    async with Daemon(tmp_path / "daemon-store", registry) as daemon:
        seen = await run(
            "ollama", "gemma3:1b", base_url=daemon.url, settings=ollama_settings(tmp_path, registry)
        )
    assert seen[-1].status is DownloadStatus.COMPLETE, seen[-1].message
    assert daemon.pulls == ["gemma3:1b"]
    layer = json.loads(registry.models[("library/gemma3", "1b")].manifest)["layers"][0]
    during = [p for p in seen if p.current_file == layer["digest"][7:19]]
    percents = [p.percent for p in during if p.percent is not None]
    assert len(percents) >= 3 and percents == sorted(percents)
    assert seen[-1].files_completed == seen[-1].total_files == 3  # two layers and the config
    assert f"through {daemon.url}" in seen[-1].message
    assert any(p.status is DownloadStatus.VERIFYING for p in seen)
    manifest = tmp_path / "daemon-store" / "manifests" / registry.host / "library/gemma3/1b"
    assert manifest.read_bytes() == registry.models[("library/gemma3", "1b")].manifest


async def test_an_unknown_model_yields_the_daemon_s_error(tmp_path: Path, registry) -> None:
    async with Daemon(tmp_path / "daemon-store", registry) as daemon:
        seen = await run(
            "ollama", "nope:1b", base_url=daemon.url, settings=ollama_settings(tmp_path, registry)
        )
    assert seen[-1].status is DownloadStatus.ERROR
    assert seen[-1].message == "pull model manifest: file does not exist"


async def test_no_daemon_yields_cannot_connect(tmp_path: Path, registry: Registry) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    seen = await run(
        "ollama",
        "gemma3:1b",
        base_url=url,
        via="daemon",
        settings=ollama_settings(tmp_path, registry),
    )
    assert [p.status for p in seen][-1] is DownloadStatus.ERROR
    assert seen[-1].message == f"Cannot connect to Ollama server at {url}"


async def test_pausing_a_daemon_pull_keeps_its_partial_and_resume_pulls_again(
    tmp_path: Path, registry: Registry
) -> None:
    registry.blob_host.throttle = 4 * MiB
    async with Daemon(tmp_path / "daemon-store", registry) as daemon:
        settings = ollama_settings(tmp_path, registry, ollama_host=daemon.url)
        async with DownloadManager(settings) as m:
            task = await m.add("ollama://gemma3:1b")
            async for p in m.subscribe(task.id):
                if (p.downloaded_bytes or 0) > 3 * MiB:
                    break
            await m.pause(task.id)
            await asyncio.sleep(0.3)
            served = registry.blob_host.served
            await asyncio.sleep(0.5)
            assert registry.blob_host.served == served  # the daemon stopped with us
            partial = list((tmp_path / "daemon-store" / "blobs").glob("*-partial"))
            assert partial and partial[0].stat().st_size >= 3 * MiB
            await m.resume(task.id)
            done = await m.wait(task.id)
        assert done.state is TaskState.COMPLETED
        assert daemon.pulls == ["gemma3:1b", "gemma3:1b"]
        assert registry.blob_host.served < 12 * MiB + 2 * MiB  # the partial was continued


async def test_without_a_choice_the_daemon_is_used_when_it_answers(
    tmp_path: Path, registry: Registry
) -> None:
    async with Daemon(tmp_path / "daemon-store", registry) as daemon:
        settings = ollama_settings(tmp_path, registry, ollama_host=daemon.url)
        seen = await run("ollama", "gemma3:1b", settings=settings)
    assert seen[-1].status is DownloadStatus.COMPLETE and daemon.pulls == ["gemma3:1b"]
    assert store_files(tmp_path / "ollama") == []  # nothing written by us: the daemon did it


# --- straight from the registry ---------------------------------------------------------------


async def test_a_registry_pull_writes_exactly_ollama_s_store_layout_with_verified_blobs(
    tmp_path: Path, registry: Registry
) -> None:
    seen = await run("ollama", "gemma3:1b", settings=ollama_settings(tmp_path, registry))
    assert seen[-1].status is DownloadStatus.COMPLETE, seen[-1].message
    manifest = registry.models[("library/gemma3", "1b")].manifest
    parsed = json.loads(manifest)
    digests = [e["digest"] for e in [*parsed["layers"], parsed["config"]]]
    store = tmp_path / "ollama"
    assert store_files(store) == sorted(
        [f"blobs/{d.replace(':', '-')}" for d in digests]
        + [f"manifests/{registry.host}/library/gemma3/1b"]
    )
    for d in digests:
        blob = store / "blobs" / d.replace(":", "-")
        assert "sha256:" + hashlib.sha256(blob.read_bytes()).hexdigest() == d
    assert (store / f"manifests/{registry.host}/library/gemma3/1b").read_bytes() == manifest


async def test_a_second_model_sharing_a_layer_reuses_it(tmp_path: Path, registry) -> None:
    settings = ollama_settings(tmp_path, registry)
    first = await run("ollama", "tiny:a", via="registry", settings=settings)
    shared = "sha256-" + hashlib.sha256(registry.shared).hexdigest()
    served_once = registry.blob_host.served_by_file[shared]
    second = await run("ollama", "tiny:b", via="registry", settings=settings)
    assert first[-1].status is second[-1].status is DownloadStatus.COMPLETE
    assert served_once <= len(registry.shared) + 1  # the bytes once, and the probe's one byte
    assert registry.blob_host.served_by_file[shared] == served_once  # not fetched again
    store = tmp_path / "ollama" / "manifests" / registry.host / "library" / "tiny"
    assert sorted(p.name for p in store.iterdir()) == ["a", "b"]


async def test_a_blob_that_does_not_match_its_digest_fails_and_leaves_no_manifest(
    tmp_path: Path, registry: Registry
) -> None:
    layer = json.loads(registry.models[("library/gemma3", "1b")].manifest)["layers"][0]
    registry.corrupt(layer["digest"])
    seen = await run("ollama", "gemma3:1b", settings=ollama_settings(tmp_path, registry))
    assert seen[-1].status is DownloadStatus.ERROR
    assert "but the source published " + layer["digest"][7:] in seen[-1].message
    assert not (tmp_path / "ollama" / "manifests").exists()
    assert not (tmp_path / "ollama" / "blobs" / layer["digest"].replace(":", "-")).exists()


@pytest.mark.slow
async def test_a_registry_pull_killed_with_sigkill_fetches_only_what_was_missing(
    tmp_path: Path, registry: Registry
) -> None:
    rng = random.Random(3)
    layers = [(MODEL_LAYER, rng.randbytes(24 * MiB)), (TEMPLATE, rng.randbytes(2 * MiB))]
    registry.add_model("library/big", layers, tag="q4")
    registry.blob_host.throttle = 2 * MiB
    home = tmp_path / "home"
    env = {
        "MODELHAUL_OLLAMA_REGISTRY": registry.url,
        "OLLAMA_MODELS": str(tmp_path / "ollama"),
        "OLLAMA_HOST": f"127.0.0.1:{free_port()}",
    }
    settings = Settings.from_env({"MODELHAUL_HOME": str(home), **env})
    async with DownloadManager(settings, autostart=False) as m:
        task = await m.add("ollama://big:q4")
    worker = child(home, "worker.py", "1", env=env)
    async with await open_ledger(home / "ledger.db") as ledger:
        assert worker.stdout.readline().strip() == "ready"
        while (await ledger.tasks.get(task.id)).downloaded_bytes < 10 * MiB:
            assert worker.poll() is None, worker.communicate()
            await asyncio.sleep(0.05)
        worker.send_signal(signal.SIGKILL)
        worker.wait()
        durable = (await ledger.tasks.get(task.id)).downloaded_bytes
        served = registry.blob_host.served
        worker = child(home, "worker.py", "1", env=env)
        try:
            assert worker.stdout.readline().strip() == "ready"
            while not settled(done := await ledger.tasks.get(task.id)):
                await asyncio.sleep(0.1)
        finally:
            worker.kill()
            worker.wait()
    assert done.state is TaskState.COMPLETED, done.error
    total = sum(len(data) for _, data in layers)
    assert registry.blob_host.served - served <= total - durable + 8 * MiB
    assert (tmp_path / "ollama" / "manifests" / registry.host / "library/big/q4").is_file()


# --- names ----------------------------------------------------------------------------------


def test_names_get_ollama_s_defaults_and_hosts_come_from_the_name() -> None:
    n = parse_name("gemma3", "https://registry.ollama.ai")
    assert (n.host, n.namespace, n.model, n.tag) == (
        "registry.ollama.ai",
        "library",
        "gemma3",
        "latest",
    )
    assert n.manifest_url == "https://registry.ollama.ai/v2/library/gemma3/manifests/latest"
    n = parse_name("me/model:q8", "https://registry.ollama.ai")
    assert (n.namespace, n.model, n.tag) == ("me", "model", "q8")
    n = parse_name("127.0.0.1:5000/team/model:v1", "https://registry.ollama.ai")
    assert n.base == "http://127.0.0.1:5000" and str(n.manifest_path) == (
        "manifests/127.0.0.1:5000/team/model/v1"
    )
    assert parse_name("reg.example.com/ns/m:t", "x").base == "https://reg.example.com"


def test_plain_http_is_refused_for_a_remote_registry_unless_insecure() -> None:
    with pytest.raises(SpecError, match="plain http"):
        parse_name("m:t", "http://registry.example.com")
    assert parse_name("m:t", "http://registry.example.com", insecure=True).base.startswith("http:")
