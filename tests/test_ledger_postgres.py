"""The ledger on a real PostgreSQL (tests/pgkit.py): migrations under an advisory lock,
exactly-once claims under concurrency, no lost updates under READ COMMITTED, an outage
surfacing as ``LedgerUnavailableError`` and healing, and LISTEN/NOTIFY of state changes."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from pathlib import Path

import pytest
from conftest import PYTHON, python_env
from sqlalchemy import text

from storage import (
    ChunkRecord,
    FileCheckpoint,
    Lease,
    LedgerOpenError,
    LedgerUnavailableError,
    NewFile,
    NewTask,
    TaskNotFoundError,
    TaskState,
    open_ledger,
)
from storage.migrate import HEAD_REVISION

HELPERS = Path(__file__).parent / "helpers"
LEASE = Lease(host="h", pid=1, started=0.0)


def _children(script: str, args: list[str], count: int, env: dict[str, str]) -> list[str]:
    children = [
        subprocess.Popen(
            [PYTHON, str(HELPERS / script), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=python_env(**env),
        )
        for _ in range(count)
    ]
    outputs = [child.communicate(timeout=90) for child in children]
    for child, (_out, err) in zip(children, outputs, strict=True):
        assert child.returncode == 0, err
    return [out for out, _err in outputs]


def test_six_processes_opening_a_fresh_database_at_once_all_succeed_and_migrate_it_once(
    pg_server,
) -> None:
    name = pg_server.new_database(migrated=False)
    start_at = str(time.time() + 2.5)  # every child is up and waiting well before this
    outputs = _children("open_at.py", [start_at], 6, pg_server.child_env(name, {}))
    assert [out.strip() for out in outputs] == ["0"] * 6
    assert pg_server.sql("SELECT version_num FROM alembic_version", name) == HEAD_REVISION
    # one "created" row per table: a second migration would have failed or doubled nothing
    tables = pg_server.sql(
        "SELECT count(*) FROM pg_tables WHERE schemaname = 'public' AND tablename = 'tasks'", name
    )
    assert tables == "1"
    pg_server.drop_database(name)


def test_four_processes_claiming_from_200_pending_tasks_take_each_exactly_once(
    pg_server, pg_database: str, pg_url: str
) -> None:
    async def enqueue() -> list[int]:
        async with await open_ledger(pg_url) as ledger:
            return await ledger.tasks.enqueue(
                [NewTask("url", f"http://e/{i}", "/d") for i in range(200)]
            )

    ids = asyncio.run(enqueue())
    start_at = str(time.time() + 2.5)
    outputs = _children("claim_all.py", [pg_url, start_at], 4, {})
    results = [json.loads(out) for out in outputs]
    won = [task_id for r in results for task_id in r["won"]]
    assert sorted(won) == ids, "a task was claimed twice or never"
    assert sum(1 for r in results if r["won"]) >= 2, "the processes never raced"
    claims = pg_server.sql(
        "SELECT count(*), count(DISTINCT task_id) FROM events WHERE reason = 'race'", pg_database
    )
    assert claims == "200|200"


async def test_concurrent_option_merges_from_two_processes_lose_no_key(pg_url: str) -> None:
    async with await open_ledger(pg_url) as a, await open_ledger(pg_url) as b:
        [task_id] = await a.tasks.enqueue([NewTask("url", "http://e/f", "/d")])
        await asyncio.gather(
            *((a if i % 2 else b).tasks.merge_options(task_id, {f"k{i}": i}) for i in range(40))
        )
        options = (await a.tasks.get(task_id)).options
        assert {k: v for k, v in options.items() if k.startswith("k")} == {
            f"k{i}": i for i in range(40)
        }


async def test_concurrent_checkpoints_of_one_tasks_files_keep_its_totals_exact(
    pg_url: str,
) -> None:
    async with await open_ledger(pg_url) as a, await open_ledger(pg_url) as b:
        [task_id] = await a.tasks.enqueue([NewTask("url", "http://e/f", "/d")])
        files = await a.files.add(
            task_id, [NewFile(f"http://e/{i}", f"f{i}", f"/d/f{i}", 1, size=1000) for i in range(8)]
        )
        for f in files:
            await a.files.replace_chunks(f.id, [ChunkRecord(f.id, 0, 1000)])

        async def progress(ledger, f, done: int) -> None:
            chunk = ChunkRecord(f.id, 0, 1000, done, bytes(8 * done))
            await ledger.files.checkpoint([FileCheckpoint(f.id, (chunk,), done)])

        for done in (100, 400, 1000):
            await asyncio.gather(
                *(progress(a if i % 2 else b, f, done) for i, f in enumerate(files))
            )
            task = await a.tasks.get(task_id)
            assert task.downloaded_bytes == 8 * done


async def test_an_id_past_the_32_bit_integer_is_not_found_rather_than_an_overflow(
    pg_url: str,
) -> None:
    async with await open_ledger(pg_url) as ledger:
        for call in (
            ledger.tasks.get(2**31),
            ledger.tasks.transition(2**31, TaskState.PAUSED, reason="x"),
            ledger.tasks.remove(2**31),
            ledger.limits.set_task(2**31, 5),
        ):
            with pytest.raises(TaskNotFoundError, match=f"task {2**31} does not exist"):
                await call
        assert await ledger.tasks.states([2**31, 2**40]) == {}
        assert await ledger.tasks.claim(LEASE, 5, only=[2**31]) == []


async def test_a_server_that_is_down_at_open_is_a_one_line_open_error(pg_server) -> None:
    from pgkit import free_port

    url = f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/nothing"
    with pytest.raises(LedgerOpenError) as raised:
        await open_ledger(url)
    message = str(raised.value)
    assert "\n" not in message and "database server is unreachable" in message
    assert message.startswith(f"cannot open ledger at {url}")


async def test_the_database_going_away_is_ledger_unavailable_and_the_next_call_after_works(
    pg_server, pg_url: str
) -> None:
    async with await open_ledger(pg_url) as ledger:
        [task_id] = await ledger.tasks.enqueue([NewTask("url", "http://e/f", "/d")])
        await asyncio.to_thread(pg_server.stop)
        try:
            with pytest.raises(LedgerUnavailableError, match="database server is unreachable"):
                await ledger.tasks.get(task_id)
            with pytest.raises(LedgerUnavailableError, match="cannot write the ledger") as away:
                await ledger.tasks.transition(task_id, TaskState.PAUSED, reason="x")
            assert away.value.outage  # a runner waits it out (downloader/manager/outages.py)
        finally:
            await asyncio.to_thread(pg_server.start)
        # the pool's dead connections are replaced: the first call after the outage works
        paused = await ledger.tasks.transition(task_id, TaskState.PAUSED, reason="back")
        assert paused.state is TaskState.PAUSED


async def test_a_restart_in_the_middle_of_a_transaction_is_ledger_unavailable_and_heals(
    pg_server, pg_url: str
) -> None:
    def slow(conn) -> None:  # type: ignore[no-untyped-def]
        conn.execute(text("SELECT pg_sleep(30)"))

    async with await open_ledger(pg_url) as ledger:
        write = asyncio.create_task(ledger.db.write(slow))
        await asyncio.sleep(0.3)
        await asyncio.to_thread(pg_server.restart)
        with pytest.raises(LedgerUnavailableError, match="ConnectionDoesNotExistError"):
            await write
        assert await ledger.tasks.count() == 0


async def test_a_state_change_in_another_process_is_heard_with_its_task_id(pg_url: str) -> None:
    async with await open_ledger(pg_url) as runner, await open_ledger(pg_url) as control:
        ids = await control.tasks.enqueue([NewTask("url", f"http://e/{i}", "/d") for i in range(3)])
        async with runner.changes() as feed:
            await control.tasks.transition(ids[1], TaskState.PAUSED, reason="from elsewhere")
            heard = await feed.wait(30)  # returns as soon as the notification arrives
            assert heard.task_ids == {ids[1]} and not heard.missed
            claimed = await control.tasks.claim(LEASE, 5)
            heard = await feed.wait(30)
            assert heard.task_ids == {t.id for t in claimed}
            # a refused move rolls back, and so does its notification
            with pytest.raises(TaskNotFoundError):
                await control.tasks.transition(2**30, TaskState.PAUSED, reason="x")
            assert not await feed.wait(0.3)


async def test_notifications_that_are_not_task_ids_are_ignored(pg_url: str) -> None:
    async with await open_ledger(pg_url) as ledger:
        [task_id] = await ledger.tasks.enqueue([NewTask("url", "http://e/f", "/d")])
        async with ledger.changes() as feed:

            def hostile(conn) -> None:  # type: ignore[no-untyped-def]
                for payload in ("", "x; DROP TABLE tasks", "-1", "9" * 40, "١٢", "7\n8"):
                    conn.execute(text("SELECT pg_notify('modelhaul_tasks', :p)"), {"p": payload})

            await ledger.db.write(hostile)
            await ledger.tasks.transition(task_id, TaskState.PAUSED, reason="x")
            heard = await feed.wait(30)
            assert heard.task_ids == {task_id} and not heard.missed


async def test_the_change_feed_reconnects_after_a_restart_and_says_it_missed_changes(
    pg_server, pg_url: str
) -> None:
    async with await open_ledger(pg_url) as ledger:
        [task_id] = await ledger.tasks.enqueue([NewTask("url", "http://e/f", "/d")])
        async with ledger.changes() as feed:
            await asyncio.to_thread(pg_server.restart)
            heard = await feed.wait(30)
            assert heard.missed
            await ledger.tasks.transition(task_id, TaskState.PAUSED, reason="after")
            heard = await feed.wait(30)
            assert task_id in heard.task_ids


async def test_on_sqlite_the_change_feed_just_waits_out_its_time(tmp_path: Path) -> None:
    async with await open_ledger(tmp_path / "l.db") as ledger:
        [task_id] = await ledger.tasks.enqueue([NewTask("url", "http://e/f", "/d")])
        async with ledger.changes() as feed:
            await ledger.tasks.transition(task_id, TaskState.PAUSED, reason="x")
            heard = await feed.wait(0.05)
            assert not heard and heard.task_ids == frozenset()
