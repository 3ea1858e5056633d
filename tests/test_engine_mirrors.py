"""One file from several mirrors on loopback: the bytes are spread by speed, and a mirror
that stops, or announces another size, is dropped with a note while the others finish it."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import pytest
from enginekit import engine, fetch, file_sha256, sha256, small_settings

from downloader.engine.mirrors import AllMirrorsFailedError
from downloader.settings import MiB
from downloader.testing.origin import Origin
from storage import FileRecord, Ledger, NewFile, NewTask

SIZE = 16 * MiB + 321


@pytest.fixture(scope="module")
def data() -> bytes:
    return random.Random(18).randbytes(SIZE)


async def add(ledger: Ledger, urls: list[str], dest: Path, **kw) -> FileRecord:
    """A task with one file and its mirrors, as the URL source records them."""
    [task_id] = await ledger.tasks.enqueue([NewTask("url", urls[0], str(dest))])
    [record] = await ledger.files.add(
        task_id,
        [NewFile(urls[0], dest.name, str(dest), MiB, meta={"mirrors": urls[1:]}, **kw)],
    )
    return record


async def history(ledger: Ledger, record: FileRecord) -> str:
    return "\n".join(e.reason for e in await ledger.tasks.events(record.task_id))


async def test_bytes_come_from_every_mirror_by_speed(
    ledger: Ledger, tmp_path: Path, data: bytes
) -> None:
    rates = [4 * MiB, 2 * MiB, MiB // 2]
    origins = [Origin({"m.bin": data}, throttle=r) for r in rates]
    for o in origins:
        await o.start()
    try:
        dest = tmp_path / "out" / "m.bin"
        record = await add(ledger, [o.url("m.bin") for o in origins], dest)
        settings = small_settings(
            tmp_path, connections=6, min_chunk=MiB, adaptive_connections=False
        )
        async with engine(ledger, settings) as ctx:
            done, _ = await fetch(ctx, ledger, record)
    finally:
        for o in origins:
            await o.stop()
    assert file_sha256(dest) == sha256(data)
    served = [o.served_by_file.get("m.bin", 0) for o in origins]
    print("served by mirror (4, 2, 0.5 MiB/s per connection):", served)
    assert all(s >= SIZE // 50 for s in served), served  # each took a share
    assert served[0] == max(served), served  # the fastest the most
    assert served[0] > served[2] * 2, served
    assert "dropped" not in await history(ledger, done)


async def test_a_mirror_stopped_mid_file_is_dropped(
    ledger: Ledger, tmp_path: Path, data: bytes
) -> None:
    a = await Origin({"m.bin": data}, throttle=2 * MiB).start()
    b = await Origin({"m.bin": data}, throttle=2 * MiB).start()
    try:
        dest = tmp_path / "out" / "m.bin"
        record = await add(ledger, [a.url("m.bin"), b.url("m.bin")], dest)
        settings = small_settings(tmp_path, connections=4, min_chunk=MiB)
        async with engine(ledger, settings) as ctx:
            run = asyncio.create_task(fetch(ctx, ledger, record))
            while b.served < 2 * MiB and not run.done():
                await asyncio.sleep(0.05)
            await b.stop()
            done, _ = await run
    finally:
        await a.stop()
        await b.stop()
    assert file_sha256(dest) == sha256(data)
    notes = await history(ledger, done)
    assert f"mirror {b.url('m.bin')} dropped" in notes, notes
    assert a.served_by_file["m.bin"] > SIZE // 2


async def test_a_mirror_with_another_size_is_not_used(
    ledger: Ledger, tmp_path: Path, data: bytes
) -> None:
    a = await Origin({"m.bin": data}).start()
    b = await Origin({"m.bin": data[:-1]}).start()
    try:
        dest = tmp_path / "out" / "m.bin"
        record = await add(ledger, [a.url("m.bin"), b.url("m.bin")], dest, size=SIZE)
        async with engine(ledger, small_settings(tmp_path, connections=4)) as ctx:
            done, _ = await fetch(ctx, ledger, record)
    finally:
        await a.stop()
        await b.stop()
    assert file_sha256(dest) == sha256(data)
    assert b.served <= 1  # its probe's byte, nothing more
    notes = await history(ledger, done)
    assert f"mirror {b.url('m.bin')} not used" in notes and f"not {SIZE}" in notes, notes


async def test_every_mirror_failing_names_them_all(
    ledger: Ledger, tmp_path: Path, data: bytes
) -> None:
    origins = [await Origin({"m.bin": data}, throttle=MiB).start() for _ in range(2)]
    urls = [o.url("m.bin") for o in origins]
    record = await add(ledger, urls, tmp_path / "out" / "m.bin")
    settings = small_settings(tmp_path, connections=2, min_chunk=MiB)
    async with engine(ledger, settings) as ctx:
        run = asyncio.create_task(fetch(ctx, ledger, record))
        while min(o.served for o in origins) < MiB // 2 and not run.done():
            await asyncio.sleep(0.05)
        for o in origins:
            await o.stop()
        with pytest.raises(AllMirrorsFailedError) as caught:
            await run
    assert all(url in str(caught.value) for url in urls), caught.value


async def test_a_mirror_serving_a_corrupted_range_is_found_and_refetched(
    ledger: Ledger, tmp_path: Path, data: bytes
) -> None:
    bad = bytearray(data)
    for at in range(100, SIZE, MiB):  # same size, other bytes in each MiB it serves
        bad[at : at + 100] = bytes(100)
    good = [Origin({"m.bin": data}, throttle=4 * MiB) for _ in range(2)]
    liar = Origin({"m.bin": bytes(bad)}, throttle=4 * MiB)
    origins = [good[0], liar, good[1]]
    for o in origins:
        await o.start()
    try:
        dest = tmp_path / "out" / "m.bin"
        urls = [o.url("m.bin") for o in origins]
        record = await add(ledger, urls, dest, expected_sha256=sha256(data))
        settings = small_settings(tmp_path, connections=6, min_chunk=MiB)
        async with engine(ledger, settings) as ctx:
            done, _ = await fetch(ctx, ledger, record)
    finally:
        for o in origins:
            await o.stop()
    assert file_sha256(dest) == sha256(data) == done.sha256
    notes = await history(ledger, done)
    assert f"mirror {urls[1]} dropped" in notes and "differ from the other mirrors'" in notes
    assert all(f"mirror {u} dropped" not in notes for u in (urls[0], urls[2])), notes
    # Only suspects' blocks were asked for again (a good mirror's may be, before the liar's
    # are): never the whole file once per mirror.
    total = sum(o.served_by_file["m.bin"] for o in origins)
    print(f"served {total} bytes for a file of {SIZE}")
    assert total < 2.2 * SIZE
