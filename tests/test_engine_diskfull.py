"""A real full disk (a small tmpfs): a clear error naming the path, nothing inconsistent,
and the download completes once space is freed."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import pytest
from enginekit import add_file, engine, fetch, small_settings

from downloader.engine.download import FileDownload
from downloader.engine.progress import FileProgress
from downloader.errors import DiskFullError
from downloader.settings import MiB
from downloader.testing.origin import Origin
from storage import FileState, Ledger

SIZE = 24 * MiB


@pytest.fixture
def small_disk(tmpfs) -> Path:
    """A 40 MiB tmpfs."""
    return tmpfs("40m")


@pytest.fixture(scope="module")
def data() -> bytes:
    return random.Random(11).randbytes(SIZE)


def fill(disk: Path, leave: int) -> Path:
    """Fill the disk until only about ``leave`` bytes are free."""
    import os

    st = os.statvfs(disk)
    filler = disk / "filler"
    filler.write_bytes(b"\0" * max(0, st.f_bavail * st.f_frsize - leave))
    return filler


async def test_disk_full_at_allocation_names_the_path_and_completes_after_freeing(
    ledger: Ledger, tmp_path: Path, small_disk: Path, data: bytes
) -> None:
    filler = fill(small_disk, 8 * MiB)
    async with Origin({"m.bin": data}) as origin:
        record = await add_file(ledger, origin.url("m.bin"), small_disk / "m.bin")
        async with engine(ledger, small_settings(tmp_path)) as ctx:
            with pytest.raises(DiskFullError) as raised:
                await FileDownload(ctx, record, ledger.journal(record)).run()
            # Refused before anything is allocated, naming the file and both numbers.
            assert f"the file needs {SIZE} bytes" in str(raised.value)
            assert f"has {raised.value.free} free" in str(raised.value)
            assert str(small_disk / "m.bin.part") in str(raised.value)
            assert not (small_disk / "m.bin.part").exists()
            assert origin.served <= 1  # refused before fetching anything but the probe
            filler.unlink()
            done, _ = await fetch(ctx, ledger, await ledger.files.get(record.id))
    assert done.state is FileState.COMPLETED and (small_disk / "m.bin").read_bytes() == data


async def test_disk_full_mid_download_keeps_part_and_ledger_consistent_then_resumes(
    ledger: Ledger, tmp_path: Path, small_disk: Path, data: bytes
) -> None:
    settings = small_settings(tmp_path, preallocate=False, connections=4)
    # Throttled, so that the disk can fill up (another program writing) mid-download.
    async with Origin({"m.bin": data}, throttle=2 * MiB) as origin:
        record = await add_file(ledger, origin.url("m.bin"), small_disk / "m.bin")
        async with engine(ledger, settings) as ctx:
            progress = FileProgress(record.id, record.relpath, record.size)
            running = asyncio.create_task(
                FileDownload(ctx, record, ledger.journal(record), progress=progress).run()
            )
            while progress.written < 4 * MiB and not running.done():
                await asyncio.sleep(0.05)
            filler = fill(small_disk, 0)
            with pytest.raises(DiskFullError, match="no space left on device") as raised:
                await running
            assert str(small_disk / "m.bin.part") in str(raised.value)
            stopped = await ledger.files.get(record.id)
            chunks = await ledger.files.chunks(record.id)
            part = (small_disk / "m.bin.part").read_bytes()
            durable = [(c.start, c.start + c.done) for c in chunks if c.done]
            assert stopped.downloaded_bytes == sum(b - a for a, b in durable) > 0
            assert all(part[a:b] == data[a:b] for a, b in durable)  # the ledger never lies
            filler.unlink()
            done, progress = await fetch(ctx, ledger, stopped)
    assert done.state is FileState.COMPLETED and (small_disk / "m.bin").read_bytes() == data
    assert progress.fetched < SIZE  # it resumed: the durable part was not fetched again
