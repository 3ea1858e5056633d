"""The manager and download_model() in one process: the progress users see, cancel, the
queue's order and limits, and bad input that changes nothing."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import pytest
from managerkit import manager_settings

from downloader import (
    DestinationError,
    DownloadManager,
    DownloadStatus,
    IllegalTransitionError,
    SpecError,
    TaskNotFoundError,
    TaskState,
    download_model,
)
from downloader.progress import DownloadProgress
from downloader.settings import MiB
from downloader.testing.origin import Origin


@pytest.fixture(scope="module")
def data() -> bytes:
    return random.Random(8).randbytes(16 * MiB + 77)


async def collect(*args, **kwargs) -> list[DownloadProgress]:
    return [p async for p in download_model(*args, **kwargs)]


async def test_download_model_yields_starting_rising_downloading_verifying_complete(
    tmp_path: Path, data: bytes
) -> None:
    settings = manager_settings(tmp_path / "home")
    async with Origin({"m.bin": data}, throttle=4 * MiB) as origin:
        folder = f"{tmp_path / 'out'}/"  # a trailing slash names a folder to create
        seen = await collect("url", origin.url("m.bin"), dest=folder, settings=settings)
    statuses = [p.status for p in seen]
    assert statuses[0] is DownloadStatus.STARTING and statuses[-1] is DownloadStatus.COMPLETE
    order = [s for i, s in enumerate(statuses) if i == 0 or s != statuses[i - 1]]
    assert order == [
        DownloadStatus.STARTING,
        DownloadStatus.DOWNLOADING,
        DownloadStatus.VERIFYING,
        DownloadStatus.COMPLETE,
    ]
    percents = [p.percent for p in seen if p.status is DownloadStatus.DOWNLOADING and p.percent]
    assert len(percents) >= 3 and percents == sorted(percents) and percents[-1] > percents[0]
    moving = [p for p in seen if p.bytes_per_second > 0]
    assert moving and all(p.formatted_speed.endswith("/s") for p in moving)
    assert any(p.formatted_eta for p in moving)
    last = seen[-1]
    assert last.percent == 100.0 and last.downloaded_bytes == last.total_bytes == len(data)
    assert last.files_completed == last.total_files == 1 and last.state is TaskState.COMPLETED
    assert (tmp_path / "out" / "m.bin").read_bytes() == data


async def test_download_model_of_a_missing_url_yields_one_error_naming_url_and_status(
    tmp_path: Path,
) -> None:
    settings = manager_settings(tmp_path / "home")
    async with Origin({}) as origin:
        seen = await collect("url", origin.url("gone.gguf"), dest=tmp_path, settings=settings)
    errors = [p for p in seen if p.status is DownloadStatus.ERROR]
    assert len(errors) == 1 and seen[-1] is errors[0]
    assert errors[0].message == f"HTTP 404 Not Found for {origin.url('gone.gguf')}"
    assert errors[0].state is TaskState.FAILED


@pytest.mark.parametrize(
    ("provider", "expected"),
    [
        ("lmstudio", "LM Studio has no download API"),
        ("openai", "cloud-only"),
        ("anthropic", "cloud-only"),
        ("nosuch", "unknown provider 'nosuch'; supported providers: "),
    ],
)
async def test_unsupported_and_unknown_providers_answer_with_an_error(
    tmp_path: Path, provider: str, expected: str
) -> None:
    seen = await collect(provider, "some/model", settings=manager_settings(tmp_path))
    assert [p.status for p in seen] == [DownloadStatus.ERROR]
    assert expected in seen[0].message


async def test_download_model_again_resumes_the_same_task_instead_of_starting_over(
    tmp_path: Path, data: bytes
) -> None:
    settings = manager_settings(tmp_path / "home")
    async with Origin({"m.bin": data}, throttle=4 * MiB) as origin:
        url = origin.url("m.bin")
        first = None
        async for p in download_model("url", url, dest=tmp_path / "m.bin", settings=settings):
            if p.status is DownloadStatus.DOWNLOADING and (p.downloaded_bytes or 0) > 6 * MiB:
                first = p
                break  # the caller walks away: the task is paused, not lost
        served_at_break = origin.served
        seen = await collect("url", url, dest=tmp_path / "m.bin", settings=settings)
        refetched = origin.served - served_at_break
    assert first is not None and seen[-1].status is DownloadStatus.COMPLETE
    assert seen[-1].task_id == first.task_id
    # What came again is the rest, plus at most one unfinished block per connection (and
    # what was in flight when the caller left): not the whole file.
    slack = settings.connections * (settings.block_size + settings.write_size)
    assert refetched <= len(data) - first.downloaded_bytes + slack
    assert refetched < len(data)
    assert (tmp_path / "m.bin").read_bytes() == data


async def test_cancel_keeps_or_purges_the_part_and_a_cancelled_task_cannot_resume(
    tmp_path: Path, data: bytes
) -> None:
    settings = manager_settings(tmp_path / "home")
    async with (
        Origin({"a.bin": data, "b.bin": data}, throttle=2 * MiB) as origin,
        DownloadManager(settings) as manager,
    ):
        keep = await manager.add(origin.url("a.bin"), dest=tmp_path / "a.bin")
        purge = await manager.add(origin.url("b.bin"), dest=tmp_path / "b.bin")
        for task in (keep, purge):
            while (await manager.get(task.id)).downloaded_bytes < 2 * MiB:
                await asyncio.sleep(0.05)
        kept = await manager.cancel(keep.id)
        purged = await manager.cancel(purge.id, purge=True)
        assert kept.state is purged.state is TaskState.CANCELLED
        assert (tmp_path / "a.bin.part").stat().st_size == len(data)
        assert not (tmp_path / "b.bin.part").exists()
        history = [(e.from_state, e.to_state) for e in await manager.history(keep.id)]
        assert history[-1] == (TaskState.DOWNLOADING, TaskState.CANCELLED)
        with pytest.raises(IllegalTransitionError, match="cannot go from cancelled"):
            await manager.resume(keep.id)


async def test_a_thousand_small_files_respect_the_task_limit_and_priority_each_once(
    tmp_path: Path,
) -> None:
    rng = random.Random(1000)
    files = {f"f{i:04}.bin": rng.randbytes(rng.randrange(100, 5000)) for i in range(1000)}
    priorities = {name: rng.choice([0, 1, 5, 9]) for name in files}
    settings = manager_settings(tmp_path / "home", max_tasks=4)
    async with Origin(files) as origin:
        async with DownloadManager(settings, autostart=False) as manager:
            tasks = await manager.add_many(
                [
                    {"spec": origin.url(n), "dest": tmp_path / "out" / n, "priority": p}
                    for n, p in priorities.items()
                ]
            )
            await manager.run(once=True)
            events = {t.id: await manager.history(t.id) for t in tasks}
            finals = {t.id: (await manager.get(t.id)).state for t in tasks}
        gets = [r.path for r in origin.log if r.method == "GET" and r.range != "bytes=0-0"]
    assert set(finals.values()) == {TaskState.COMPLETED}
    spans = []
    for task in tasks:
        moves = [e for e in events[task.id] if e.from_state is not None]
        assert [m.to_state for m in moves] == [TaskState.DOWNLOADING, TaskState.COMPLETED]
        spans.append((moves[0].id, moves[1].id, task))  # event ids follow the ledger's order
    # never more than 4 running at once
    points = sorted([(s, 1) for s, _, _ in spans] + [(e, -1) for _, e, _ in spans])
    running = peak = 0
    for _, step in points:
        running += step
        peak = max(peak, running)
    assert peak <= 4
    # claimed highest priority first, then oldest
    claimed = [t for _, _, t in sorted(spans, key=lambda s: s[0])]
    assert [(-t.priority, t.id) for t in claimed] == sorted((-t.priority, t.id) for t in tasks)
    # each file fetched exactly once, and right
    assert sorted(gets) == sorted(f"/files/{n}" for n in files)
    for name, content in list(files.items())[::97]:
        assert (tmp_path / "out" / name).read_bytes() == content


async def test_a_file_already_at_the_destination_completes_with_zero_bytes_fetched(
    tmp_path: Path, data: bytes
) -> None:
    (tmp_path / "have.bin").write_bytes(data)
    async with (
        Origin({"have.bin": data}) as origin,
        DownloadManager(manager_settings(tmp_path / "home")) as manager,
    ):
        task = await manager.add(origin.url("have.bin"), dest=tmp_path / "have.bin")
        done = await manager.wait(task.id)
        assert done.state is TaskState.COMPLETED
        assert origin.served <= 1  # a probe of one byte learned the size; nothing else


async def test_bad_input_is_a_clear_typed_error_and_changes_nothing(
    tmp_path: Path, data: bytes
) -> None:
    async with (
        Origin({"m.bin": data}) as origin,
        DownloadManager(manager_settings(tmp_path / "home")) as manager,
    ):
        done = await manager.wait((await manager.add(origin.url("m.bin"), dest=tmp_path)).id)
        before = (await manager.list(), await manager.history(done.id))

        with pytest.raises(SpecError, match="is not a download spec"):
            await manager.add("not a url at all")
        with pytest.raises(SpecError, match=r"only http:// and https://"):
            await manager.add("ftp://example.com/model.gguf")
        with pytest.raises(DestinationError, match=r"cannot use /proc/modelhaul/m\.bin"):
            await manager.add(origin.url("m.bin"), dest="/proc/modelhaul/m.bin")
        with pytest.raises(TaskNotFoundError, match="task 999 does not exist"):
            await manager.pause(999)
        with pytest.raises(IllegalTransitionError, match="cannot go from completed"):
            await manager.resume(done.id)

        assert (await manager.list(), await manager.history(done.id)) == before
