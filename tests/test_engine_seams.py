"""What the engine is handed: an EngineConfig built by Settings, and the journal of one file,
bound to the lease its task runs under."""

from __future__ import annotations

import pytest

from downloader.engine.config import EngineConfig
from downloader.settings import Settings
from storage import (
    ChunkRecord,
    FileState,
    Lease,
    LeaseLostError,
    Ledger,
    NewFile,
    NewTask,
    TaskState,
)


def test_engine_config_defaults_are_the_settings_own() -> None:
    assert Settings().engine() == EngineConfig()


def test_a_tasks_own_connection_count_is_checked_like_any_setting() -> None:
    settings = Settings(rate_limit=1 << 20, stall_timeout=5.0)
    config = settings.engine(connections=8)
    assert (config.connections, config.rate_limit, config.stall_timeout) == (8, 1 << 20, 5.0)
    with pytest.raises(ValueError, match=r"connections .* must be a whole number from 1 to 64"):
        settings.engine(connections=0)
    with pytest.raises(TypeError, match="not an engine setting: home"):
        settings.engine(home="/tmp")


async def two_files(ledger: Ledger):
    [task_id] = await ledger.tasks.enqueue([NewTask("url", "http://e/m", "/d/m")])
    return await ledger.files.add(
        task_id,
        [NewFile("http://e/a", "a", "/d/a", 4, size=8), NewFile("http://e/b", "b", "/d/b", 4)],
    )


async def test_a_journal_writes_its_own_files_rows_and_its_tasks_history(
    ledger: Ledger,
) -> None:
    a, b = await two_files(ledger)
    journal = ledger.journal(a)
    await journal.replace_chunks([ChunkRecord(a.id, 0, 8)], state=FileState.DOWNLOADING)
    await journal.checkpoint([ChunkRecord(a.id, 0, 8, 4, b"x" * 8)], 4, 123, 8)
    await journal.note("a: the remote file changed")
    assert await journal.chunks() == [ChunkRecord(a.id, 0, 8, 4, b"x" * 8)]
    stored = await ledger.files.get(a.id)
    assert (stored.downloaded_bytes, stored.part_mtime_ns, stored.part_size) == (4, 123, 8)
    assert await ledger.files.get(b.id) == b  # the other file is untouched
    notes = [e.reason for e in await ledger.tasks.events(a.task_id)]
    assert "a: the remote file changed" in notes


async def test_a_journal_refuses_every_write_once_another_process_holds_the_task(
    ledger: Ledger, lease: Lease
) -> None:
    a, _ = await two_files(ledger)
    await ledger.tasks.claim(lease, 1)
    journal = ledger.journal(a, lease.owner)
    await journal.update(state=FileState.DOWNLOADING)
    await ledger.tasks.transition(a.task_id, TaskState.PAUSED, reason="elsewhere")
    await ledger.tasks.transition(a.task_id, TaskState.PENDING, reason="resumed")
    await ledger.tasks.claim(Lease(host="elsewhere", pid=9, started=1.0), 1)
    with pytest.raises(LeaseLostError):
        await journal.update(state=FileState.COMPLETED)
    with pytest.raises(LeaseLostError):
        await journal.replace_chunks([])
    with pytest.raises(LeaseLostError):
        await journal.checkpoint([ChunkRecord(a.id, 0, 8, 8, b"x" * 16)], 8, 1, 8)
    assert (await ledger.files.get(a.id)).state is FileState.DOWNLOADING
