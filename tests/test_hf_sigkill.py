"""A snapshot download killed with SIGKILL resumes: finished files are not fetched again and
the unfinished one continues from its chunks."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import pytest
from hubkit import sha256
from managerkit import child, settled

from downloader import DownloadManager, Settings, TaskState
from downloader.settings import MiB
from downloader.sources.hfcache import storage_folder
from downloader.testing.hub import Hub
from downloader.testing.modelfiles import gguf_bytes
from storage import FileState, open_ledger

pytestmark = pytest.mark.slow


async def test_a_killed_snapshot_resumes_without_refetching_finished_files(tmp_path: Path) -> None:
    small = {f"part{i}.gguf": gguf_bytes(size=2 * MiB, seed=i) for i in range(3)}
    big = {"big.gguf": gguf_bytes(size=40 * MiB, seed=9)}
    hub = Hub(tmp_path / "hub", cdn_throttle=2 * MiB)
    await asyncio.to_thread(hub.add_repo, "org/mixed", {**small, **big, "config.json": b"{}"})
    home, cache = tmp_path / "home", tmp_path / "hfcache"
    env = {"HF_ENDPOINT": "", "HF_HUB_CACHE": str(cache)}
    async with hub:
        env["HF_ENDPOINT"] = hub.endpoint
        settings = Settings.from_env({"MODELHAUL_HOME": str(home), **env})
        async with DownloadManager(settings, autostart=False) as m:
            task = await m.add("hf://org/mixed")
        first = child(home, "worker.py", "1", env=env)
        async with await open_ledger(home / "ledger.db") as ledger:
            assert first.stdout.readline().strip() == "ready"
            while True:  # until the small files are done and the big one is under way
                files = {f.relpath: f for f in await ledger.files.of_task(task.id)}
                done = [n for n in small if n in files and files[n].state is FileState.COMPLETED]
                if len(done) == 3 and files["big.gguf"].downloaded_bytes >= 8 * MiB:
                    break
                assert first.poll() is None, first.communicate()
                await asyncio.sleep(0.05)
            first.send_signal(signal.SIGKILL)
            first.wait()
            durable = (await ledger.files.get(files["big.gguf"].id)).downloaded_bytes
            served_before = dict(hub.cdn.served_by_file)

            second = child(home, "worker.py", "1", env=env)
            try:
                assert second.stdout.readline().strip() == "ready"
                while not settled(finished := await ledger.tasks.get(task.id)):
                    await asyncio.sleep(0.1)
            finally:
                second.kill()
                second.wait()
        assert finished.state is TaskState.COMPLETED, finished.error
    snap = storage_folder(cache, "org/mixed") / "snapshots" / hub.repos["org/mixed"].refs["main"]
    for name in [*small, *big]:
        published = hub.file("org/mixed", name)
        assert sha256(snap / name) == published.lfs_sha256
        after = hub.cdn.served_by_file.get(published.lfs_sha256, 0)
        before = served_before.get(published.lfs_sha256, 0)
        if name in small:
            assert after == before, f"{name} was fetched again"
    big_sha = hub.file("org/mixed", "big.gguf").lfs_sha256
    refetched = hub.cdn.served_by_file[big_sha] - served_before[big_sha]
    assert refetched <= 40 * MiB - durable + 16 * MiB  # the rest, plus at most a block per link
