"""A small file whose size and SHA-256 its source publishes is fetched without a probe: its
first range request stands in for one. The rule's edges: a file past one connection's share
is probed; a CDN that answers that request in full starts the file over, probed; a size
other than the published one fails the file and names both; a resume probes as ever."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from hubkit import sha256
from managerkit import manager_settings, until

from downloader import DownloadManager, DownloadStatus, TaskState, download_model
from downloader.settings import MiB
from downloader.sources.hfcache import storage_folder
from downloader.testing.faults import Fault, FaultKind
from downloader.testing.hub import Hub
from downloader.testing.modelfiles import gguf_bytes, safetensors_bytes


def settings(tmp_path: Path, hub: Hub, **overrides):
    return manager_settings(
        tmp_path / "home", hf_endpoint=hub.endpoint, hf_cache=tmp_path / "hfcache", **overrides
    )


def snapshot(tmp_path: Path, hub: Hub, repo: str) -> Path:
    commit = hub.repos[repo].refs["main"]
    return storage_folder(tmp_path / "hfcache", repo) / "snapshots" / commit


def ranges_of(hub: Hub, repo: str, path: str, since: int = 0) -> list[str | None]:
    """The Range of each request the CDN had for one file (from the ``since``-th on)."""
    sha = hub.file(repo, path).lfs_sha256
    assert sha is not None
    return [r.range for r in hub.cdn.log[since:] if sha in r.path]


async def one_file_hub(tmp_path: Path, seed: int, **options) -> tuple[Hub, bytes, str]:
    """A hub (not started) whose org/m holds one LFS file, w.safetensors, of about 1 MiB;
    with its bytes and the SHA-256 the CDN serves it under."""
    hub = Hub(tmp_path / "hub", **options)
    data = safetensors_bytes({"w": (MiB // 4,)}, seed=seed)
    await asyncio.to_thread(hub.add_repo, "org/m", {"w.safetensors": data})
    sha = hub.file("org/m", "w.safetensors").lfs_sha256
    assert sha is not None
    return hub, data, sha


async def run(*args, **kwargs):
    return [p async for p in download_model(*args, **kwargs)]


async def test_small_published_files_take_one_request_each_and_a_larger_one_is_probed(
    tmp_path: Path,
) -> None:
    hub = Hub(tmp_path / "hub")
    small = {
        f"s{i}.safetensors": safetensors_bytes({f"w{i}": (MiB // 4 - 1000 * i,)}, seed=i)
        for i in range(3)
    }
    larger = gguf_bytes(size=2 * MiB + 1, seed=9)  # past min_chunk (2 MiB): two connections
    await asyncio.to_thread(hub.add_repo, "org/m", {**small, "larger.gguf": larger})
    async with hub:
        seen = await run("huggingface", "org/m", settings=settings(tmp_path, hub))
        assert seen[-1].status is DownloadStatus.COMPLETE, seen[-1].message
        for name, data in small.items():
            assert ranges_of(hub, "org/m", name) == [f"bytes=0-{len(data) - 1}"], name
        assert ranges_of(hub, "org/m", "larger.gguf")[0] == "bytes=0-0"
    snap = snapshot(tmp_path, hub, "org/m")
    for name, data in {**small, "larger.gguf": larger}.items():
        assert (snap / name).read_bytes() == data, name


@pytest.mark.parametrize(
    "fault",
    [
        Fault(FaultKind.IGNORE_RANGE, ranged_only=True),  # a 200 with the whole body
        Fault(FaultKind.STATUS, status=404, ranged_only=True),
        Fault(FaultKind.STATUS, status=416, ranged_only=True),
    ],
    ids=lambda f: f"{f.kind.value}-{f.status}" if f.kind is FaultKind.STATUS else f.kind.value,
)
async def test_a_first_range_not_answered_as_a_probe_would_be_has_the_file_probed(
    tmp_path: Path, fault: Fault
) -> None:
    hub, data, fault.path = await one_file_hub(tmp_path, seed=3)
    async with hub:
        hub.cdn.inject(fault)
        # No start-over is spent on it (none is allowed here): nothing was written, and the
        # remote file need not have changed.
        async with DownloadManager(settings(tmp_path, hub, max_restarts=0)) as m:
            task = await m.add("hf://org/m/w.safetensors")
            done = await m.wait(task.id)
            history = [e.reason for e in await m.history(task.id)]
        asked = ranges_of(hub, "org/m", "w.safetensors")
    assert done.state is TaskState.COMPLETED, done.error
    assert not [r for r in history if "starting this file over" in r], history
    whole = f"bytes=0-{len(data) - 1}"
    assert asked == [whole, "bytes=0-0", whole], asked
    assert (snapshot(tmp_path, hub, "org/m") / "w.safetensors").read_bytes() == data


async def test_the_first_ranges_validator_holds_for_the_rest_of_an_unprobed_file(
    tmp_path: Path,
) -> None:
    hub, data, sha = await one_file_hub(tmp_path, seed=6)
    async with hub:
        # Cut after 700,000 bytes: the first 512 KiB are written (one write's worth).
        hub.cdn.inject(Fault(FaultKind.TRUNCATE, path=sha, at_byte=700_000, ranged_only=True))
        seen = await run(
            "huggingface", "org/m", filename="w.safetensors", settings=settings(tmp_path, hub)
        )
        asked = [r for r in hub.cdn.log if sha in r.path]
        etag = hub.cdn.etag(sha)
    assert seen[-1].status is DownloadStatus.COMPLETE, seen[-1].message
    assert asked[0].range == f"bytes=0-{len(data) - 1}" and "If-Range" not in asked[0].headers
    # The rest, asked for again under the ETag of the response that stood in for the probe.
    assert [(r.range, r.headers.get("If-Range")) for r in asked[1:]] == [
        (f"bytes={512 * 1024}-{len(data) - 1}", etag)
    ], asked
    assert (snapshot(tmp_path, hub, "org/m") / "w.safetensors").read_bytes() == data


async def test_a_cdn_serving_another_size_than_published_fails_the_file_naming_both(
    tmp_path: Path,
) -> None:
    hub, data, sha = await one_file_hub(tmp_path, seed=4)
    async with hub:
        hub.cdn.put(sha, data + b"\0" * 100)  # the CDN's copy is not what the hub describes
        seen = await run(
            "huggingface", "org/m", filename="w.safetensors", settings=settings(tmp_path, hub)
        )
    assert seen[-1].status is DownloadStatus.ERROR
    message = seen[-1].message
    assert f"its size is now {len(data) + 100}" in message, message
    assert f"the published SHA-256 is for {len(data)} bytes" in message, message
    assert not (snapshot(tmp_path, hub, "org/m") / "w.safetensors").exists()


async def test_a_small_file_resumed_after_a_pause_is_probed_and_asks_only_for_the_rest(
    tmp_path: Path,
) -> None:
    hub, data, _ = await one_file_hub(tmp_path, seed=5, cdn_throttle=256 * 1024)  # four seconds
    async with hub, DownloadManager(settings(tmp_path, hub)) as m:
        task = await m.add("hf://org/m/w.safetensors")
        await until(m.ledger, task.id, lambda t: t.downloaded_bytes >= 256 * 1024)
        await m.pause(task.id)
        paused = await until(m.ledger, task.id, lambda t: t.state is TaskState.PAUSED)
        [record] = await m.files(task.id)
        before = len(hub.cdn.log)
        assert await m.resume(task.id)
        done = await m.wait(task.id)
        resumed = [r for r in hub.cdn.log[before:] if record.expected_sha256 in r.path]
    assert done.state is TaskState.COMPLETED, done.error
    assert ranges_of(hub, "org/m", "w.safetensors")[0] == f"bytes=0-{len(data) - 1}"
    # Resumed: probed first, then only what was missing, under the validator the probe found.
    assert resumed[0].range == "bytes=0-0", resumed
    rest = resumed[1]
    start = int(rest.range.removeprefix("bytes=").split("-")[0])
    assert paused.downloaded_bytes <= start < len(data), (paused.downloaded_bytes, rest.range)
    assert rest.headers.get("If-Range"), rest.headers
    blob = snapshot(tmp_path, hub, "org/m") / "w.safetensors"
    assert sha256(blob) == record.expected_sha256
