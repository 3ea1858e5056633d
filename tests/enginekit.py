"""Helpers for engine tests: run one file download against a real server and ledger."""

from __future__ import annotations

import asyncio
import hashlib
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from downloader.durable import sha256_of
from downloader.engine.context import EngineContext
from downloader.engine.download import FileDownload
from downloader.engine.http import open_session
from downloader.engine.progress import FileProgress
from downloader.engine.ratelimit import TokenBucket
from downloader.engine.retry import RetryPolicy
from downloader.settings import MiB, Settings
from storage import FileRecord, Ledger, NewFile, NewTask


def small_settings(tmp_path: Path, **overrides) -> Settings:
    """Small, fast settings: short stalls and backoffs so faults resolve quickly."""
    base = {
        "home": tmp_path / "home",
        "connections": 8,
        "min_chunk": 2 * MiB,
        "max_chunk": 8 * MiB,
        "stall_timeout": 3.0,
        "retry": RetryPolicy(attempts=6, backoff_factor=0.05, backoff_max=0.5),
    }
    base.update(overrides)
    return Settings(**base)


@asynccontextmanager
async def engine(ledger: Ledger, settings: Settings):
    """An EngineContext with its own HTTP session; downloads write to ``ledger`` through
    each file's journal."""
    config = settings.engine()
    async with open_session(config) as session:
        yield EngineContext(session, config, TokenBucket(config.rate_limit))


async def add_file(
    ledger: Ledger, url: str, dest: Path, *, expected_sha256: str | None = None, size=None
) -> FileRecord:
    """A task with one file, as a source would create it."""
    [task_id] = await ledger.tasks.enqueue([NewTask("url", url, str(dest))])
    [record] = await ledger.files.add(
        task_id,
        [NewFile(url, dest.name, str(dest), MiB, size=size, expected_sha256=expected_sha256)],
    )
    return record


async def fetch(
    ctx: EngineContext, ledger: Ledger, record: FileRecord, **kwargs
) -> tuple[FileRecord, FileProgress]:
    """Run the file download to its end, journaled in ``ledger``."""
    progress = FileProgress(record.id, record.relpath, record.size)
    journal = ledger.journal(record)
    done = await FileDownload(ctx, record, journal, progress=progress, **kwargs).run()
    return done, progress


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def file_sha256(path: Path) -> str:
    return sha256_of(path)


async def run_until(ctx, ledger, record, written: int) -> FileProgress:
    """Start the download, cancel it (a pause) once ``written`` bytes are in the .part."""
    progress = FileProgress(record.id, record.relpath, record.size)
    task = asyncio.create_task(
        FileDownload(ctx, record, ledger.journal(record), progress=progress).run()
    )
    while progress.written < written:
        assert not task.done(), "finished before the pause"
        await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    return progress
