"""Alembic: the models and the migrated schema agree; upgrade and downgrade both work."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import venv
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from conftest import REPO
from sqlalchemy import create_engine, inspect

from storage.migrate import HEAD_REVISION, alembic_config, head_revision
from storage.models import METADATA


def _engine(path: Path):
    return create_engine(f"sqlite:///{path}")


def test_migrated_schema_matches_the_models(tmp_path: Path) -> None:
    engine = _engine(tmp_path / "l.db")
    with engine.begin() as conn:
        cfg = alembic_config()
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), METADATA)
    assert diff == []


async def test_migrated_schema_matches_the_models_on_postgresql(pg_server) -> None:
    from sqlalchemy.ext.asyncio import create_async_engine

    from storage import open_ledger

    name = pg_server.new_database(migrated=False)
    async with await open_ledger(pg_server.url(name)):
        pass  # opening migrates
    engine = create_async_engine(pg_server.url(name))

    def compare(conn):  # type: ignore[no-untyped-def]
        return compare_metadata(MigrationContext.configure(conn), METADATA)

    def run(conn, action, target):  # type: ignore[no-untyped-def]
        cfg = alembic_config()
        cfg.attributes["connection"] = conn
        action(cfg, target)
        return set(inspect(conn).get_table_names())

    try:
        async with engine.connect() as conn:
            assert await conn.run_sync(compare) == []
        tables = {"tasks", "files", "chunks", "events", "limits", "contents", "cache_uses"}
        async with engine.begin() as conn:
            assert await conn.run_sync(run, command.downgrade, "base") & tables == set()
        async with engine.begin() as conn:
            assert tables <= await conn.run_sync(run, command.upgrade, "head")
        async with engine.connect() as conn:
            assert await conn.run_sync(compare) == []
    finally:
        await engine.dispose()
        pg_server.drop_database(name)


def _sqlite_schema(path: Path) -> dict[str, object]:
    """Every table's columns, indexes, foreign keys and AUTOINCREMENT, as SQLite sees them."""
    with sqlite3.connect(path) as db:
        names = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        schema: dict[str, object] = {}
        for name in sorted(n for n in names if n != "sqlite_sequence"):
            sql = db.execute("SELECT sql FROM sqlite_master WHERE name=?", (name,)).fetchone()[0]
            indexes = {
                (r[1], r[2], tuple(c[2] for c in db.execute(f"PRAGMA index_info('{r[1]}')")))
                for r in db.execute(f"PRAGMA index_list('{name}')")
            }
            schema[name] = (
                [r[1:] for r in db.execute(f"PRAGMA table_info('{name}')")],
                indexes,
                sorted(r[2:] for r in db.execute(f"PRAGMA foreign_key_list('{name}')")),
                "AUTOINCREMENT" in sql.upper(),
            )
        return schema


async def test_a_new_ledger_is_built_at_head_as_the_migrations_would_build_it(
    tmp_path: Path,
) -> None:
    from storage import NewTask, open_ledger

    async with await open_ledger(tmp_path / "new.db") as ledger:
        await ledger.tasks.enqueue([NewTask("url", "http://e/y", "/d/y")])
    migrated = _engine(tmp_path / "migrated.db")
    with migrated.begin() as conn:
        cfg = alembic_config()
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")
    migrated.dispose()
    built = _sqlite_schema(tmp_path / "new.db")
    assert built == _sqlite_schema(tmp_path / "migrated.db")
    assert {"tasks", "files", "chunks", "events", "alembic_version"} <= set(built)
    engine = _engine(tmp_path / "new.db")
    with engine.connect() as conn:
        assert MigrationContext.configure(conn).get_current_revision() == HEAD_REVISION
        assert compare_metadata(MigrationContext.configure(conn), METADATA) == []
    # Alembic takes the stamped ledger as its own: it steps down and back up again. (Not
    # byte-equal afterwards: a batch step down on SQLite drops AUTOINCREMENT, as it does on a
    # migrated ledger.)
    with engine.begin() as conn:
        cfg = alembic_config()
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0007")
        assert "files_host" not in {c["name"] for c in inspect(conn).get_columns("tasks")}
        command.upgrade(cfg, "head")
    with engine.connect() as conn:
        assert MigrationContext.configure(conn).get_current_revision() == HEAD_REVISION
        assert compare_metadata(MigrationContext.configure(conn), METADATA) == []
    engine.dispose()


def test_the_head_revision_constant_matches_the_scripts() -> None:
    assert head_revision() == HEAD_REVISION


def test_upgrade_downgrade_and_upgrade_again(tmp_path: Path) -> None:
    engine = _engine(tmp_path / "l.db")

    def run(action, target):
        with engine.begin() as conn:
            cfg = alembic_config()
            cfg.attributes["connection"] = conn
            action(cfg, target)
        with engine.connect() as conn:
            return set(inspect(conn).get_table_names())

    tables = {"tasks", "files", "chunks", "events"}
    assert tables <= run(command.upgrade, "head")
    assert run(command.downgrade, "base") & tables == set()
    assert tables <= run(command.upgrade, "head")
    with sqlite3.connect(tmp_path / "l.db") as db:
        assert db.execute("SELECT version_num FROM alembic_version").fetchone() == (
            head_revision(),
        )


@pytest.mark.slow
def test_installed_wheel_opens_a_ledger_without_the_checkout(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(dist)],
        cwd=REPO,
        check=True,
        capture_output=True,
    )
    [wheel] = dist.glob("modelhaul-*.whl")
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    py = env_dir / "bin" / "python"
    subprocess.run(
        [str(py), "-m", "pip", "install", "--no-deps", "--quiet", str(wheel)],
        check=True,
        capture_output=True,
    )
    # The dependencies come from this interpreter's site-packages, read through a .pth file:
    # a .pth inside a directory added this way is not executed, so this checkout's editable
    # install cannot leak in, and the storage package must come from the wheel.
    site = subprocess.run(
        [str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    deps = [p for p in sys.path if p.endswith("site-packages")]
    (Path(site) / "zz_test_deps.pth").write_text("\n".join(deps) + "\n")
    script = (
        "import asyncio, storage\n"
        "from storage import open_ledger\n"
        "from storage.migrate import head_revision\n"
        "print(storage.__file__, head_revision())\n"
        "async def main():\n"
        "    async with await open_ledger('ledger.db') as ledger:\n"
        "        print(await ledger.tasks.count())\n"
        "asyncio.run(main())\n"
    )
    result = subprocess.run(
        [str(py), "-c", script], cwd=tmp_path, capture_output=True, text=True, env={}
    )
    assert result.returncode == 0, result.stderr
    location, head, count = result.stdout.split()
    # The scripts came with the wheel (a new ledger is built without them; an old one needs them).
    assert location.startswith(str(env_dir)) and head == HEAD_REVISION and count == "0"
    assert (tmp_path / "ledger.db").is_file()


async def test_a_ledger_written_at_an_older_revision_is_upgraded_on_open_with_its_data(
    tmp_path: Path,
) -> None:
    from storage import NewTask, open_ledger

    path = tmp_path / "old.db"
    engine = _engine(path)
    with engine.begin() as conn:
        cfg = alembic_config()
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0001")
    engine.dispose()
    with sqlite3.connect(path) as db:
        db.execute(
            "INSERT INTO tasks (provider, source, destination, options, spec_key, label, state,"
            " priority, downloaded_bytes, files_total, files_done, created_at, updated_at)"
            " VALUES ('url', 'http://e/x', '/d/x', '{}', 'k', 'x', 'paused', 0, 0, 0, 0, 1, 1)"
        )
    async with await open_ledger(path) as ledger:
        [task] = await ledger.tasks.list()
        assert task.source == "http://e/x" and task.state.value == "paused"
        await ledger.tasks.enqueue([NewTask("url", "http://e/y", "/d/y")])
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT version_num FROM alembic_version").fetchone() == (HEAD_REVISION,)
        indexes = {r[1] for r in db.execute("PRAGMA index_list('tasks')")}
        assert "ix_tasks_updated_at" in indexes
