"""One file from several mirrors on loopback: the bytes are spread by speed, and a mirror
that stops, or announces another size, is dropped with a note while the others finish it."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import pytest
from enginekit import engine, fetch, file_sha256, sha256, small_settings

from downloader.engine.mirrors import AllMirrorsFailedError
from downloader.engine.plan import served_bytes
from downloader.engine.retry import RetryPolicy
from downloader.settings import MiB
from downloader.testing.faults import Fault, FaultKind
from downloader.testing.origin import Origin
from storage import FileRecord, FileState, Ledger, NewFile, NewTask

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
    assert f"mirror {urls[1]} dropped" in notes and "differ from the other sources'" in notes
    assert all(f"mirror {u} dropped" not in notes for u in (urls[0], urls[2])), notes
    # Only suspects' blocks were asked for again (a good mirror's may be, before the liar's
    # are): never the whole file once per mirror.
    total = sum(o.served_by_file["m.bin"] for o in origins)
    print(f"served {total} bytes for a file of {SIZE}")
    assert total < 2.2 * SIZE


async def test_the_ledger_names_the_source_of_every_byte(
    ledger: Ledger, tmp_path: Path, data: bytes
) -> None:
    origins = [Origin({"m.bin": data}, throttle=4 * MiB) for _ in range(2)]
    for o in origins:
        await o.start()
    try:
        dest = tmp_path / "out" / "m.bin"
        urls = [o.url("m.bin") for o in origins]
        record = await add(ledger, urls, dest)
        settings = small_settings(tmp_path, connections=4, min_chunk=MiB)
        async with engine(ledger, settings) as ctx:
            done, _ = await fetch(ctx, ledger, record)
    finally:
        for o in origins:
            await o.stop()
    chunks = await ledger.files.chunks(done.id)
    recorded = served_bytes(chunks)
    # Every byte has its source, and each source's count is what that origin sent as
    # range bodies (the probes' single bytes aside).
    assert sum(recorded.values()) == SIZE, recorded
    for o, url in zip(origins, urls, strict=True):
        assert abs(recorded.get(url, 0) - o.served_by_file["m.bin"]) <= 4, (recorded, url)
    assert f"{recorded[urls[0]]:,} bytes from {urls[0]}" in await history(ledger, done)


async def test_a_liar_found_after_a_restart_from_what_the_ledger_recorded(
    ledger: Ledger, tmp_path: Path, data: bytes
) -> None:
    """The bad mirror served part of the file before the process stopped, and is gone
    when it resumes: the ledger still says which blocks were its, and only those are
    fetched again."""
    bad = bytearray(data)
    for at in range(100, SIZE, MiB):
        bad[at : at + 100] = bytes(100)
    good = Origin({"m.bin": data}, throttle=2 * MiB)
    liar = Origin({"m.bin": bytes(bad)}, throttle=2 * MiB)
    for o in (good, liar):
        await o.start()
    dest = tmp_path / "out" / "m.bin"
    urls = [good.url("m.bin"), liar.url("m.bin")]
    record = await add(ledger, urls, dest, expected_sha256=sha256(data))
    settings = small_settings(tmp_path, connections=4, min_chunk=MiB)
    try:
        async with engine(ledger, settings) as ctx:
            run = asyncio.create_task(fetch(ctx, ledger, record))
            while liar.served < 3 * MiB and not run.done():
                await asyncio.sleep(0.05)
            run.cancel()  # a stop: the last checkpoint records who served what
            await asyncio.gather(run, return_exceptions=True)
        await liar.stop()
        first = served_bytes(await ledger.files.chunks(record.id))
        assert first.get(urls[1], 0) >= MiB, first
        before = good.served_by_file["m.bin"]
        record = await ledger.files.get(record.id)
        async with engine(ledger, settings) as ctx:
            done, _ = await fetch(ctx, ledger, record)
    finally:
        await good.stop()
        await liar.stop()
    assert file_sha256(dest) == sha256(data) == done.sha256
    notes = await history(ledger, done)
    assert f"source {urls[1]} served bad bytes" in notes, notes
    # The resumed run fetched what was missing and the liar's recorded blocks, no more.
    second = good.served_by_file["m.bin"] - before
    missing = SIZE - sum(first.values())
    liar_blocks = -(-first[urls[1]] // MiB) + len(first) * 2
    assert second <= missing + liar_blocks * MiB, (second, missing, first)
    assert served_bytes(await ledger.files.chunks(done.id)) == {urls[0]: SIZE}


async def test_a_file_whose_url_is_down_at_the_start_comes_from_its_mirror(
    ledger: Ledger, tmp_path: Path, data: bytes
) -> None:
    mirror = await Origin({"m.bin": data}).start()
    dead = await Origin({"m.bin": data}).start()
    dead_url = dead.url("m.bin")
    await dead.stop()  # its port now refuses connections
    try:
        dest = tmp_path / "out" / "m.bin"
        record = await add(ledger, [dead_url, mirror.url("m.bin")], dest)
        settings = small_settings(
            tmp_path, retry=RetryPolicy(attempts=2, backoff_factor=0.05, backoff_max=0.2)
        )
        async with engine(ledger, settings) as ctx:
            done, _ = await fetch(ctx, ledger, record)
    finally:
        await mirror.stop()
    assert file_sha256(dest) == sha256(data)
    notes = await history(ledger, done)
    assert f"{mirror.url('m.bin')} serves the file instead" in notes, notes
    assert done.meta["validated_by"] == mirror.url("m.bin")
    assert mirror.served_by_file["m.bin"] >= SIZE


async def test_the_files_own_url_changing_starts_the_file_over_even_with_mirrors(
    ledger: Ledger, tmp_path: Path, data: bytes
) -> None:
    """A peer that does not hold the file must not turn a changed origin into a failure:
    the file starts over from its own URL, as it would without mirrors."""
    async with Origin({"m.bin": data}, throttle=16 * MiB) as origin:
        dead = await Origin({"m.bin": data}).start()
        dead_url = dead.url("m.bin")
        await dead.stop()
        origin.inject(Fault(FaultKind.CHANGE, after=6, times=1))
        dest = tmp_path / "out" / "m.bin"
        record = await add(ledger, [origin.url("m.bin"), dead_url], dest)
        async with engine(ledger, small_settings(tmp_path, connections=4)) as ctx:
            done, _ = await fetch(ctx, ledger, record)
        new = origin.content("m.bin")
    assert new != data and done.state is FileState.COMPLETED
    assert dest.read_bytes() == new
    notes = await history(ledger, done)
    assert "starting this file over" in notes, notes
