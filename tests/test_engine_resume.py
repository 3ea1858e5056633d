"""Pause and resume in one process: durable progress, no re-reading after a clean stop,
damaged blocks found and fetched again."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from enginekit import add_file, engine, fetch, run_until, small_settings

from downloader.settings import MiB
from downloader.testing.origin import Origin
from storage import FileState, Ledger

SIZE = 32 * MiB + 999


@pytest.fixture(scope="module")
def data() -> bytes:
    return random.Random(5).randbytes(SIZE)


def parse(header: str) -> tuple[int, int]:
    first, last = header.removeprefix("bytes=").split("-")
    return int(first), int(last) + 1


async def test_a_clean_pause_records_durable_progress_and_resume_fetches_only_the_rest(
    ledger: Ledger, tmp_path: Path, data: bytes
) -> None:
    async with Origin({"m.bin": data}, throttle=4 * MiB) as origin:
        record = await add_file(ledger, origin.url("m.bin"), tmp_path / "m.bin")
        async with engine(ledger, small_settings(tmp_path)) as ctx:
            written = (await run_until(ctx, ledger, record, 16 * MiB)).written
            paused = await ledger.files.get(record.id)
            chunks = await ledger.files.chunks(record.id)
            durable = [(c.start, c.start + c.done) for c in chunks if c.done]
            assert not paused.dirty and paused.part_mtime_ns is not None
            # Partial blocks are recorded too: everything written before the pause is durable.
            assert paused.downloaded_bytes == sum(b - a for a, b in durable) == written
            part = (tmp_path / "m.bin.part").read_bytes()
            assert all(part[a:b] == data[a:b] for a, b in durable)

            before = len(origin.log)
            _, progress = await fetch(ctx, ledger, await ledger.files.get(record.id))
        resumed = [
            parse(r.range) for r in origin.log[before:] if r.range and r.range != "bytes=0-0"
        ]
    assert (tmp_path / "m.bin").read_bytes() == data
    assert progress.checked == 0, "a clean resume re-read written blocks"
    for a, b in resumed:
        assert all(b <= start or a >= end for start, end in durable), f"refetched {a}-{b}"
    assert progress.fetched <= SIZE - paused.downloaded_bytes


async def test_a_corrupted_block_written_before_a_pause_is_found_and_fetched_again(
    ledger: Ledger, tmp_path: Path, data: bytes
) -> None:
    async with Origin({"m.bin": data}, throttle=4 * MiB) as origin:
        record = await add_file(ledger, origin.url("m.bin"), tmp_path / "m.bin")
        async with engine(ledger, small_settings(tmp_path)) as ctx:
            await run_until(ctx, ledger, record, 12 * MiB)
            chunks = await ledger.files.chunks(record.id)
            victim = next(c for c in chunks if c.done >= MiB)
            spot = victim.start + 100  # inside a block the ledger calls durable
            with (tmp_path / "m.bin.part").open("r+b") as f:
                f.seek(spot)
                f.write(b"\x00garbage\x00")
            paused = await ledger.files.get(record.id)
            served_before = origin.served
            done, progress = await fetch(ctx, ledger, paused)
            refetched = origin.served - served_before
    assert done.state is FileState.COMPLETED
    assert (tmp_path / "m.bin").read_bytes() == data
    assert progress.checked == paused.downloaded_bytes  # mtime differed: every block checked
    # only the rest of the file and the one damaged block came over the network again
    assert refetched <= SIZE - paused.downloaded_bytes + MiB + 1
    notes = [e.reason for e in await ledger.tasks.events(record.task_id)]
    assert any("1 written block(s) did not match their XXH3 digests" in n for n in notes)


async def test_a_deleted_part_file_voids_its_progress_and_the_file_is_fetched_again(
    ledger: Ledger, tmp_path: Path, data: bytes
) -> None:
    async with Origin({"m.bin": data}, throttle=4 * MiB) as origin:
        record = await add_file(ledger, origin.url("m.bin"), tmp_path / "m.bin")
        async with engine(ledger, small_settings(tmp_path)) as ctx:
            await run_until(ctx, ledger, record, 8 * MiB)
            (tmp_path / "m.bin.part").unlink()
            done, _ = await fetch(ctx, ledger, await ledger.files.get(record.id))
    assert done.state is FileState.COMPLETED and (tmp_path / "m.bin").read_bytes() == data
    notes = [e.reason for e in await ledger.tasks.events(record.task_id)]
    assert any("m.bin.part is missing: its recorded progress is void" in n for n in notes)
