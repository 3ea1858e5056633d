"""``storage.glance``: the ledger read with the standard library for ``modelhaul ls``. It must
read exactly what the ledger's own queries read, and step aside (None) wherever it cannot."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from clikit import run
from test_startup import imported_by

from storage import Lease, Ledger, NewFile, NewTask, glance, open_ledger
from storage import TaskState as S
from storage.migrate import head_revision


async def _fill(ledger: Ledger, lease: Lease) -> list[int]:
    ids = await ledger.tasks.enqueue(
        [
            NewTask("url", "http://e/a.gguf", "/d/a.gguf", options={"rate_limit": 2_000_000}),
            NewTask(
                "huggingface", "org/repo", "/cache", revision="main", patterns=("*.gguf", "é/*")
            ),
            NewTask("ollama", "llama3.2:1b", "/ollama", priority=7),
        ]
    )
    [claimed] = await ledger.tasks.claim(lease, 1)
    files = await ledger.files.add(
        claimed.id,
        [
            NewFile("http://e/x", "x.gguf", "/cache/x", 1 << 20, size=5, meta={"k": [1, "ü"]}),
            NewFile("http://e/y", "sub/y.json", "/cache/y", 1 << 20, etag='"e"'),
        ],
    )
    await ledger.files.update(files[0].id, accept_ranges=True, downloaded_bytes=3)
    await ledger.tasks.transition(ids[2], S.PAUSED, reason="paused by a test")
    return ids


async def test_glance_reads_what_the_ledger_reads(tmp_path: Path, lease: Lease) -> None:
    target = str(tmp_path / "ledger.db")
    ledger = await open_ledger(target)
    try:
        ids = await _fill(ledger, lease)
        for states in (None, [S.PENDING], [S.DOWNLOADING, S.PAUSED], []):
            assert await glance.tasks(target, states) == await ledger.tasks.list(states)
        files = await glance.files(target, ids)
        assert files == {i: await ledger.files.of_task(i) for i in ids}
    finally:
        await ledger.close()
    assert sum(len(f) for f in files.values()) == 2  # the check compared something


async def test_glance_knows_the_schema_the_migrations_end_at() -> None:
    # A new migration must look at glance's queries too (and then move SCHEMA on).
    assert head_revision() == glance.SCHEMA


async def test_glance_steps_aside_wherever_it_cannot_answer(tmp_path: Path) -> None:
    assert await glance.tasks(str(tmp_path / "none.db")) == []  # no ledger: no tasks
    assert not (tmp_path / "none.db").exists()  # and none was made
    assert await glance.tasks("postgresql://db/modelhaul") is None
    assert await glance.tasks("sqlite:///" + str(tmp_path / "x.db")) is None
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"not a database" * 100)
    assert await glance.tasks(str(garbage)) is None
    assert garbage.read_bytes() == b"not a database" * 100

    target = tmp_path / "ledger.db"
    ledger = await open_ledger(target)
    await ledger.tasks.enqueue([NewTask("url", "http://e/a", "/d/a")])
    await ledger.close()
    db = sqlite3.connect(target)
    with db:
        db.execute("UPDATE alembic_version SET version_num = '0003'")  # an older schema
    assert await glance.tasks(str(target)) is None
    with db:
        db.execute("UPDATE alembic_version SET version_num = ?", (glance.SCHEMA,))
        db.execute("UPDATE tasks SET state = 'sleeping'")  # a value no record takes
    assert await glance.tasks(str(target)) is None
    with db:
        db.execute("UPDATE tasks SET state = 'pending', options = '{not json'")
    assert await glance.tasks(str(target)) is None
    db.close()


async def test_ls_reads_the_same_through_glance_and_through_the_ledger(
    tmp_path: Path, lease: Lease
) -> None:
    home = tmp_path / "home"
    ledger = await open_ledger(home / "ledger.db")
    try:
        await _fill(ledger, lease)
    finally:
        await ledger.close()
    # A ledger URL is the manager's business: the same file, read the long way.
    url = f"sqlite:///{home / 'ledger.db'}"
    for argv in (["ls", "--json"], ["ls", "--state", "paused", "--json"], ["ls"]):
        quick = await run(home, *argv, NO_COLOR="1", COLUMNS="200")
        slow = await run(home, *argv, NO_COLOR="1", COLUMNS="200", MODELHAUL_LEDGER=url)
        assert quick.code == slow.code == 0, quick.stderr + slow.stderr
        assert quick.stdout == slow.stdout
    every = json.loads((await run(home, "ls", "--json")).stdout)
    # the ollama task (priority 7) was claimed, given the files, then paused
    assert [t["state"] for t in every] == ["paused", "pending", "pending"]
    assert [len(t["files"]) for t in every] == [2, 0, 0]


def test_ls_of_a_ledger_loads_neither_sqlalchemy_nor_aiohttp(tmp_path: Path) -> None:
    home = tmp_path / "home"
    made, _ = imported_by(
        "get", "--detach", "--no-check", "http://127.0.0.1:9/a.bin", "--home", str(home)
    )
    assert made.returncode == 0, made.stderr[-2000:]
    for argv in (["ls"], ["ls", "--json"]):
        got, modules = imported_by(*argv, "--home", str(home))
        assert got.returncode == 0, got.stderr[-2000:]
        assert "a.bin" in got.stdout
        heavy = sorted(m for m in modules if m.split(".")[0] in ("sqlalchemy", "aiohttp"))
        assert heavy == [], f"modelhaul {' '.join(argv)} loaded {heavy}"
