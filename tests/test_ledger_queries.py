"""The ledger's bulk calls and queries: enqueue, claim order, heartbeats, checkpoints."""

from __future__ import annotations

import pytest
from conftest import on_both_backends

from storage import (
    ChunkRecord,
    FileCheckpoint,
    FileState,
    Lease,
    Ledger,
    NewFile,
    NewTask,
    TaskNotFoundError,
)
from storage import TaskState as S


@on_both_backends
async def test_bulk_enqueue_of_ten_thousand_tasks_returns_their_ids_in_order(
    ledger: Ledger,
) -> None:
    specs = [NewTask("url", f"http://e/{i}", f"/d/{i}") for i in range(10_000)]
    ids = await ledger.tasks.enqueue(specs)
    assert len(ids) == 10_000 and ids == sorted(ids) and len(set(ids)) == 10_000
    assert await ledger.tasks.count([S.PENDING]) == 10_000
    sample = await ledger.tasks.get(ids[1234])
    assert sample.source == "http://e/1234" and sample.destination == "/d/1234"
    assert [e.reason for e in await ledger.tasks.events(ids[-1])] == ["created"]


@on_both_backends
async def test_claim_takes_highest_priority_first_then_oldest(ledger: Ledger, lease: Lease) -> None:
    ids = await ledger.tasks.enqueue(
        [NewTask("url", f"http://e/{i}", f"/d/{i}", priority=p) for i, p in enumerate([0, 5, 0, 5])]
    )
    first = await ledger.tasks.claim(lease, 3)
    assert [t.id for t in first] == [ids[1], ids[3], ids[0]]
    assert all(t.state is S.DOWNLOADING and t.lease == lease for t in first)
    assert [t.id for t in await ledger.tasks.claim(lease, 5)] == [ids[2]]
    assert await ledger.tasks.claim(lease, 5) == []


@on_both_backends
async def test_heartbeat_reports_only_tasks_still_held(ledger: Ledger, lease: Lease) -> None:
    ids = await ledger.tasks.enqueue([NewTask("url", f"http://e/{i}", "/d") for i in range(3)])
    await ledger.tasks.claim(lease, 3)
    await ledger.tasks.transition(ids[1], S.PAUSED, reason="paused elsewhere")
    assert await ledger.tasks.heartbeat(lease, ids) == {ids[0], ids[2]}
    other = Lease(host="elsewhere", pid=9, started=1.0)
    assert await ledger.tasks.heartbeat(other, ids) == set()


async def test_a_token_in_task_options_is_refused() -> None:
    with pytest.raises(ValueError, match="must not carry secrets"):
        NewTask("huggingface", "org/repo", "/d", options={"token": "hf_secret"})


@on_both_backends
async def test_same_download_has_the_same_spec_key_and_can_be_found(ledger: Ledger) -> None:
    a = NewTask("huggingface", "org/repo", "/d", revision="main", patterns=("*.gguf",))
    b = NewTask("huggingface", "org/repo", "/d", revision="main", patterns=("*.gguf",))
    c = NewTask("huggingface", "org/repo", "/elsewhere", revision="main", patterns=("*.gguf",))
    assert a.spec_key == b.spec_key != c.spec_key
    [task_id] = await ledger.tasks.enqueue([a])
    found = await ledger.tasks.find(b.spec_key, [S.PENDING, S.PAUSED])
    assert found is not None and found.id == task_id
    assert await ledger.tasks.find(c.spec_key, [S.PENDING]) is None


@on_both_backends
async def test_checkpoint_of_many_chunks_is_one_transaction_and_totals_follow(
    ledger: Ledger,
) -> None:
    [task_id] = await ledger.tasks.enqueue([NewTask("url", "http://e/big", "/d/big")])
    mib = 1 << 20
    [f] = await ledger.files.add(
        task_id, [NewFile("http://e/big", "big", "/d/big", block_size=mib, size=64 * mib)]
    )
    await ledger.files.replace_chunks(
        f.id, [ChunkRecord(f.id, i * mib, (i + 1) * mib) for i in range(64)]
    )
    digest = (7).to_bytes(8, "big")
    moved = tuple(ChunkRecord(f.id, i * mib, (i + 1) * mib, mib, digest) for i in range(64))
    await ledger.files.checkpoint(
        [FileCheckpoint(f.id, moved, 64 * mib, part_mtime_ns=123, part_size=64 * mib)]
    )
    chunks = await ledger.files.chunks(f.id)
    assert all(c.finished and c.xxh3 == digest for c in chunks)
    task = await ledger.tasks.get(task_id)
    assert (task.total_bytes, task.downloaded_bytes, task.files_total) == (64 * mib, 64 * mib, 1)
    record = await ledger.files.get(f.id)
    assert (record.part_mtime_ns, record.part_size) == (123, 64 * mib)


@on_both_backends
async def test_checkpoint_upserts_a_chunk_split_off_by_work_stealing(ledger: Ledger) -> None:
    [task_id] = await ledger.tasks.enqueue([NewTask("url", "http://e/f", "/d/f")])
    [f] = await ledger.files.add(task_id, [NewFile("http://e/f", "f", "/d/f", 4, size=100)])
    await ledger.files.replace_chunks(f.id, [ChunkRecord(f.id, 0, 100)])
    await ledger.files.checkpoint(
        [
            FileCheckpoint(
                f.id, (ChunkRecord(f.id, 0, 48, 40, b"x" * 80), ChunkRecord(f.id, 48, 100, 8)), 48
            )
        ]
    )
    assert await ledger.files.chunks(f.id) == [
        ChunkRecord(f.id, 0, 48, 40, b"x" * 80),
        ChunkRecord(f.id, 48, 100, 8, b""),
    ]


@on_both_backends
async def test_files_completed_count_toward_the_task(ledger: Ledger) -> None:
    [task_id] = await ledger.tasks.enqueue([NewTask("huggingface", "o/r", "/d")])
    files = await ledger.files.add(
        task_id, [NewFile(f"http://e/{n}", n, f"/d/{n}", 1 << 20, size=10) for n in "abc"]
    )
    assert [f.position for f in files] == [0, 1, 2]
    # adding the same relpaths again is a no-op (sources may resolve twice)
    assert len(await ledger.files.add(task_id, [NewFile("http://e/a", "a", "/d/a", 1, 10)])) == 3
    await ledger.files.update(files[0].id, state=FileState.COMPLETED, downloaded_bytes=10)
    task = await ledger.tasks.get(task_id)
    assert (task.files_done, task.files_total, task.total_bytes, task.downloaded_bytes) == (
        1,
        3,
        30,
        10,
    )


async def test_a_file_update_naming_no_settable_column_is_refused_and_changes_nothing(
    ledger: Ledger,
) -> None:
    [task_id] = await ledger.tasks.enqueue([NewTask("url", "http://e/f", "/d/f")])
    [f] = await ledger.files.add(task_id, [NewFile("http://e/f", "f", "/d/f", 1 << 20, size=10)])
    for fields in ({"stat": "completed"}, {"task_id": 99}, {"updated_at": 0.0}):
        with pytest.raises(ValueError, match=next(iter(fields))):
            await ledger.files.update(f.id, **fields)
        with pytest.raises(ValueError, match=next(iter(fields))):
            await ledger.files.replace_chunks(f.id, [], **fields)
    assert await ledger.files.get(f.id) == f


@on_both_backends
async def test_many_file_updates_land_together_fenced_and_totals_follow_only_what_sums(
    ledger: Ledger, lease: Lease
) -> None:
    from storage import LeaseLostError

    [task_id] = await ledger.tasks.enqueue([NewTask("url", "http://e/f", "/d/f")])
    a, b = await ledger.files.add(
        task_id,
        [NewFile("http://e/a", "a", "/d/a", 4, size=8), NewFile("http://e/b", "b", "/d/b", 4)],
    )
    await ledger.tasks.claim(lease, 1)
    before = await ledger.tasks.get(task_id)
    # A format summary of each file: no column a total is summed from, so the task's row
    # (totals and its change time, which other processes' observers poll) stays as it was.
    await ledger.files.update_many(
        {a.id: {"meta": {"format": "x"}}, b.id: {"meta": {"format": "y"}}}, owner=lease.owner
    )
    assert [f.meta for f in await ledger.files.of_task(task_id)] == [
        {"format": "x"},
        {"format": "y"},
    ]
    assert await ledger.tasks.get(task_id) == before
    # b's size becomes known and a completes: the totals follow, in the same transaction.
    await ledger.files.update_many(
        {a.id: {"state": FileState.COMPLETED, "downloaded_bytes": 8}, b.id: {"size": 5}},
        owner=lease.owner,
    )
    task = await ledger.tasks.get(task_id)
    assert (task.total_bytes, task.downloaded_bytes, task.files_done) == (13, 8, 1)
    # Another holder's late batch changes nothing at all; a misspelt column, nothing either.
    other = Lease(host="elsewhere", pid=9, started=1.0)
    with pytest.raises(LeaseLostError):
        await ledger.files.update_many({a.id: {"meta": {}}, b.id: {"size": 1}}, owner=other.owner)
    with pytest.raises(ValueError, match="sise"):
        await ledger.files.update_many({a.id: {"size": 1}, b.id: {"sise": 1}})
    assert [f.size for f in await ledger.files.of_task(task_id)] == [8, 5]
    assert (await ledger.files.get(a.id)).meta == {"format": "x"}


@on_both_backends
async def test_removing_a_task_removes_its_files_chunks_and_events(ledger: Ledger) -> None:
    [task_id] = await ledger.tasks.enqueue([NewTask("url", "http://e/f", "/d/f")])
    [f] = await ledger.files.add(task_id, [NewFile("http://e/f", "f", "/d/f", 4, size=8)])
    await ledger.files.replace_chunks(f.id, [ChunkRecord(f.id, 0, 8)])
    await ledger.tasks.remove(task_id)
    assert await ledger.tasks.count() == 0
    assert await ledger.files.chunks(f.id) == []
    assert await ledger.tasks.events(task_id) == []


@on_both_backends
async def test_after_a_pause_the_last_runner_may_still_checkpoint_but_not_once_reclaimed(
    ledger: Ledger, lease: Lease
) -> None:
    from storage import LeaseLostError

    [task_id] = await ledger.tasks.enqueue([NewTask("url", "http://e/f", "/d/f")])
    [f] = await ledger.files.add(task_id, [NewFile("http://e/f", "f", "/d/f", 4, size=8)])
    await ledger.files.replace_chunks(f.id, [ChunkRecord(f.id, 0, 8)])
    await ledger.tasks.claim(lease, 1)
    # Paused from elsewhere: the runner that held it still records its final checkpoint.
    await ledger.tasks.transition(task_id, S.PAUSED, reason="elsewhere")
    final = FileCheckpoint(f.id, (ChunkRecord(f.id, 0, 8, 4, b"a" * 8),), 4)
    await ledger.files.checkpoint([final], owner=lease.owner)
    # Resumed and taken by another process: the old runner's late writes are refused.
    await ledger.tasks.transition(task_id, S.PENDING, reason="resumed")
    other = Lease(host="elsewhere", pid=9, started=1.0)
    await ledger.tasks.claim(other, 1)
    late = FileCheckpoint(f.id, (ChunkRecord(f.id, 0, 8, 8, b"a" * 16),), 8)
    with pytest.raises(LeaseLostError, match=f"task {task_id} is no longer run by"):
        await ledger.files.checkpoint([late], owner=lease.owner)
    with pytest.raises(LeaseLostError):
        await ledger.files.update(f.id, owner=lease.owner, state=FileState.COMPLETED)
    assert await ledger.files.chunks(f.id) == [ChunkRecord(f.id, 0, 8, 4, b"a" * 8)]
    assert (await ledger.files.get(f.id)).state is FileState.PENDING
    await ledger.files.checkpoint([late], owner=other.owner)  # the new holder writes freely


@on_both_backends
@pytest.mark.parametrize("task_id", [0, -1, 2**63, 10**30])
async def test_an_id_no_task_can_have_is_not_found_rather_than_an_overflow(
    ledger, task_id: int
) -> None:
    for call in (
        ledger.tasks.get(task_id),
        ledger.tasks.events(task_id),
        ledger.tasks.transition(task_id, S.PAUSED, reason="x"),
        ledger.tasks.remove(task_id),
    ):
        with pytest.raises(TaskNotFoundError, match=f"task {task_id} does not exist"):
            await call


@pytest.mark.parametrize(
    "stored",
    [
        '[[-5, "http://a/f"]]',  # before the chunk
        '[[0, "http://a/f"], [0, "http://b/f"]]',  # not increasing
        f'[[0, "http://a/f"], [{10**18}, "http://b/f"]]',  # past its done bytes
        "[[0, 5]]",
        '[[true, "http://a/f"]]',
        '{"0": "http://a/f"}',
        '"http://a/f"',
    ],
)
async def test_sources_edited_into_the_ledger_out_of_shape_are_read_as_unknown(
    ledger: Ledger, stored: str
) -> None:
    import sqlite3

    [task_id] = await ledger.tasks.enqueue([NewTask("url", "http://a/f", "/tmp/f")])
    [f] = await ledger.files.add(task_id, [NewFile("http://a/f", "f", "/tmp/f", 1024, size=4096)])
    chunk = ChunkRecord(f.id, 0, 4096, 2048, bytes(16), ((0, "http://a/f"),))
    await ledger.files.replace_chunks(f.id, [chunk])
    assert (await ledger.files.chunks(f.id))[0].sources == ((0, "http://a/f"),)
    assert ledger.path is not None
    with sqlite3.connect(ledger.path) as db:
        db.execute("UPDATE chunks SET sources = ? WHERE file_id = ?", (stored, f.id))
    [read] = await ledger.files.chunks(f.id)
    assert read.sources == () and read.done == 2048
