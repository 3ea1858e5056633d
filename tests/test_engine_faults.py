"""Every fault the origin can inject, alone and mixed, ends in a byte-identical file."""

from __future__ import annotations

import asyncio
import os
import random
from pathlib import Path

import pytest
from enginekit import add_file, engine, fetch, sha256, small_settings

from downloader.engine.download import FileDownload
from downloader.errors import (
    DigestMismatchError,
    HTTPStatusError,
    RemoteChangedError,
    RetriesExhaustedError,
)
from downloader.settings import MiB
from downloader.testing.origin import Fault, FaultKind, Origin
from storage import FileState, Ledger

SIZE = 24 * MiB + 4321  # not a whole number of blocks


@pytest.fixture(scope="module")
def data() -> bytes:
    return random.Random(3).randbytes(SIZE)


async def download(ledger: Ledger, tmp_path: Path, origin: Origin, name: str = "m.bin", **kw):
    """Download ``name``; pass ``expected_sha256`` to have it verified as a hub would."""
    settings = small_settings(tmp_path, **kw.pop("settings", {}))
    record = await add_file(
        ledger, origin.url(name, signed=kw.pop("signed", False)), tmp_path / "out" / name, **kw
    )
    async with engine(ledger, settings) as ctx:
        return await fetch(ctx, ledger, record)


SINGLE_FAULTS = {
    "reset": [Fault(FaultKind.RESET, at_byte=MiB + 17, times=4)],
    "truncate": [Fault(FaultKind.TRUNCATE, at_byte=3 * MiB, times=3)],
    "500": [Fault(FaultKind.STATUS, status=500, times=3)],
    "503_retry_after": [Fault(FaultKind.STATUS, status=503, retry_after=1, times=2)],
    "429_retry_after": [Fault(FaultKind.STATUS, status=429, retry_after=1, times=2)],
    "stall": [Fault(FaultKind.STALL, at_byte=2 * MiB, seconds=30, times=2)],
    "ignore_range": [Fault(FaultKind.IGNORE_RANGE, times=3, ranged_only=True, after=1)],
    "wrong_content_range": [Fault(FaultKind.WRONG_RANGE, times=3, ranged_only=True, after=1)],
}


@pytest.mark.parametrize("name", list(SINGLE_FAULTS))
async def test_each_fault_alone_ends_byte_identical(
    ledger: Ledger, tmp_path: Path, data: bytes, name: str
) -> None:
    async with Origin({"m.bin": data}) as origin:
        origin.inject(*SINGLE_FAULTS[name])
        record, _ = await download(ledger, tmp_path, origin, expected_sha256=sha256(data))
        assert all(f.times == 0 for f in SINGLE_FAULTS[name]), "the fault never fired"
    assert record.state is FileState.COMPLETED
    assert record.sha256 == sha256(data)
    assert (tmp_path / "out" / "m.bin").read_bytes() == data
    assert not (tmp_path / "out" / "m.bin.part").exists()


async def test_throttled_download_is_byte_identical(
    ledger: Ledger, tmp_path: Path, data: bytes
) -> None:
    async with Origin({"m.bin": data}, throttle=16 * MiB) as origin:
        record, _ = await download(ledger, tmp_path, origin)
        assert len({r.headers.get("Range") for r in origin.log}) > 8  # many connections
    assert record.sha256 is None  # no published digest, none computed by default
    assert (tmp_path / "out" / "m.bin").read_bytes() == data


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_faults_mixed_at_random_end_byte_identical(
    ledger: Ledger, tmp_path: Path, data: bytes, seed: int
) -> None:
    rng = random.Random(seed)
    faults = [
        Fault(FaultKind.RESET, at_byte=rng.randrange(1, 4 * MiB), times=-1, probability=0.15),
        Fault(FaultKind.TRUNCATE, at_byte=rng.randrange(1, 4 * MiB), times=-1, probability=0.1),
        Fault(FaultKind.STATUS, status=503, retry_after=0, times=-1, probability=0.1),
        Fault(FaultKind.STATUS, status=500, times=-1, probability=0.05),
        Fault(FaultKind.STALL, at_byte=MiB, seconds=20, times=2, probability=0.1),
        Fault(FaultKind.IGNORE_RANGE, times=-1, probability=0.05, ranged_only=True, after=1),
        Fault(FaultKind.WRONG_RANGE, times=-1, probability=0.05, ranged_only=True, after=1),
    ]
    async with Origin({"m.bin": data}, throttle=32 * MiB, seed=seed) as origin:
        origin.inject(*faults)
        record, _ = await download(
            ledger,
            tmp_path,
            origin,
            signed=True,
            settings={"retry": _patient()},
            expected_sha256=sha256(data),
        )
    assert record.sha256 == sha256(data)
    assert (tmp_path / "out" / "m.bin").read_bytes() == data


def _patient():
    from downloader.engine.retry import RetryPolicy

    return RetryPolicy(attempts=20, backoff_factor=0.02, backoff_max=0.2)


async def test_an_expired_signed_url_is_resolved_again_from_the_original(
    ledger: Ledger, tmp_path: Path, data: bytes
) -> None:
    async with Origin({"m.bin": data}, throttle=MiB, signed_ttl=1) as origin:
        record, _ = await download(
            ledger, tmp_path, origin, signed=True, settings={"always_sha256": True}
        )
        statuses = [(r.path.split("/")[1], r.status) for r in origin.log]
    assert record.sha256 == sha256(data)  # computed on request, with no digest published
    assert ("signed", 403) in statuses, "the signed URL never expired during the download"
    assert statuses.count(("redirect", 302)) >= 2, "the original URL was not asked again"


async def test_credentials_never_reach_the_redirect_host(
    ledger: Ledger, tmp_path: Path, data: bytes
) -> None:
    async with Origin({"m.bin": data}) as origin:
        record = await add_file(ledger, origin.url("m.bin", signed=True), tmp_path / "m.bin")
        async with engine(ledger, small_settings(tmp_path)) as ctx:
            await FileDownload(
                ctx, record, ledger.journal(record), auth_headers={"Authorization": "Bearer s3cret"}
            ).run()
        to_origin = [r for r in origin.log if r.path.startswith("/redirect/")]
        to_cdn = [r for r in origin.log if r.path.startswith("/signed/")]
    assert (tmp_path / "m.bin").read_bytes() == data
    assert to_origin and all(r.headers.get("Authorization") == "Bearer s3cret" for r in to_origin)
    assert to_cdn and all("Authorization" not in r.headers for r in to_cdn)


async def test_remote_change_mid_download_discards_progress_records_it_and_restarts(
    ledger: Ledger, tmp_path: Path, data: bytes
) -> None:
    async with Origin({"m.bin": data}, throttle=16 * MiB) as origin:
        origin.inject(Fault(FaultKind.CHANGE, after=6, times=1))
        record, _ = await download(ledger, tmp_path, origin)
        new = origin.content("m.bin")
    assert new != data and record.state is FileState.COMPLETED
    assert (tmp_path / "out" / "m.bin").read_bytes() == new
    notes = [e.reason for e in await ledger.tasks.events(record.task_id)]
    assert any("the remote file changed" in n and "starting this file over" in n for n in notes)


async def test_remote_change_against_a_published_digest_of_another_size_fails(
    ledger: Ledger, tmp_path: Path, data: bytes
) -> None:
    async with Origin({"m.bin": data}, throttle=2 * MiB) as origin:
        record = await add_file(
            ledger,
            origin.url("m.bin"),
            tmp_path / "m.bin",
            expected_sha256=sha256(data),
            size=len(data),
        )
        async with engine(ledger, small_settings(tmp_path)) as ctx:
            task = asyncio.create_task(FileDownload(ctx, record, ledger.journal(record)).run())
            await asyncio.sleep(0.5)
            origin.put("m.bin", data[: len(data) // 2])
            with pytest.raises(RemoteChangedError, match="can never match"):
                await task


async def test_bytes_that_do_not_match_the_published_digest_fail_and_are_discarded(
    ledger: Ledger, tmp_path: Path, data: bytes
) -> None:
    async with Origin({"m.bin": data}) as origin:
        record = await add_file(
            ledger, origin.url("m.bin"), tmp_path / "m.bin", expected_sha256="0" * 64
        )
        async with engine(ledger, small_settings(tmp_path)) as ctx:
            with pytest.raises(DigestMismatchError, match="published 0000") as raised:
                await FileDownload(ctx, record, ledger.journal(record)).run()
    assert sha256(data) in str(raised.value)
    assert not (tmp_path / "m.bin").exists() and not (tmp_path / "m.bin.part").exists()


@pytest.mark.parametrize("sized", [True, False], ids=["no-ranges", "no-size"])
async def test_a_server_without_ranges_gets_one_stream_restarted_from_zero(
    ledger: Ledger, tmp_path: Path, data: bytes, sized: bool
) -> None:
    async with Origin({"m.bin": data}, ranges=False, sized=sized) as origin:
        origin.inject(Fault(FaultKind.RESET, at_byte=5 * MiB, times=1, after=1))
        record, _ = await download(ledger, tmp_path, origin, expected_sha256=sha256(data))
        gets = [r for r in origin.log if r.method == "GET"]
        assert len(gets) == 3  # the probe, the stream that was reset, the stream from zero
        assert origin.served >= len(data) + 5 * MiB
    assert record.sha256 == sha256(data) and record.size == len(data)
    notes = [e.reason for e in await ledger.tasks.events(record.task_id)]
    assert any("restarted from zero after any failure" in n for n in notes)


async def test_a_missing_file_fails_at_once_naming_the_url_and_status(
    ledger: Ledger, tmp_path: Path
) -> None:
    async with Origin({}) as origin:
        record = await add_file(ledger, origin.url("nope.gguf"), tmp_path / "nope.gguf")
        async with engine(ledger, small_settings(tmp_path)) as ctx:
            with pytest.raises(HTTPStatusError) as raised:
                await FileDownload(ctx, record, ledger.journal(record)).run()
    assert raised.value.status == 404
    assert str(raised.value).startswith("HTTP 404 Not Found for http://127.0.0.1:")
    assert "nope.gguf" in str(raised.value)


async def test_endless_server_errors_give_a_clear_final_error(
    ledger: Ledger, tmp_path: Path, data: bytes
) -> None:
    async with Origin({"m.bin": data}) as origin:
        origin.inject(Fault(FaultKind.STATUS, status=503, times=-1, after=1))
        with pytest.raises(RetriesExhaustedError) as raised:
            await download(ledger, tmp_path, origin)
    message = str(raised.value)
    assert "gave up on http://" in message and "attempts without progress" in message
    assert "HTTP 503" in message


async def test_a_file_already_at_the_destination_completes_with_zero_bytes_fetched(
    ledger: Ledger, tmp_path: Path, data: bytes
) -> None:
    dest = tmp_path / "have.bin"
    dest.write_bytes(data)
    async with Origin({"have.bin": data}) as origin:
        record = await add_file(
            ledger, origin.url("have.bin"), dest, expected_sha256=sha256(data), size=len(data)
        )
        async with engine(ledger, small_settings(tmp_path)) as ctx:
            done, progress = await fetch(ctx, ledger, record)
        assert origin.log == []  # size and digest were known: not even a probe
    assert done.state is FileState.COMPLETED and progress.fetched == 0
    assert os.stat(dest).st_size == len(data)
