"""Opening a ledger: defaults, and bad input that gets a clear error and changes nothing."""

from __future__ import annotations

import os
import sqlite3
import subprocess
from pathlib import Path

import pytest
from conftest import PYTHON, python_env, system_program

from storage import LedgerOpenError, SchemaTooNewError, open_ledger
from storage.location import default_ledger_path


async def test_a_new_ledger_is_created_with_wal_and_migrated(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "er" / "ledger.db"
    async with await open_ledger(path) as ledger:
        assert ledger.path == path
        await ledger.tasks.count()
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        assert {"tasks", "files", "chunks", "events", "alembic_version"} <= tables


async def test_url_forms_name_the_same_file(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    for target in (str(path), f"sqlite:///{path}", f"sqlite+aiosqlite:///{path}"):
        async with await open_ledger(target) as ledger:
            assert ledger.path == path


def test_default_location_is_modelhaul_home_then_the_user_data_dir() -> None:
    assert default_ledger_path({"MODELHAUL_HOME": "/srv/mh"}) == Path("/srv/mh/ledger.db")
    assert default_ledger_path({"XDG_DATA_HOME": "/x"}) == Path("/x/modelhaul/ledger.db")


async def test_default_ledger_honours_modelhaul_home(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("MODELHAUL_HOME", str(tmp_path / "home"))
    async with await open_ledger() as ledger:
        assert ledger.path == tmp_path / "home" / "ledger.db"
    assert (tmp_path / "home" / "ledger.db").is_file()


async def test_a_file_that_is_not_sqlite_is_refused_and_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "notes.db"
    path.write_bytes(b"my precious notes, not a database\n" * 10)
    before = path.read_bytes()
    with pytest.raises(LedgerOpenError) as raised:
        await open_ledger(path)
    assert str(path) in str(raised.value) and "not a SQLite database" in str(raised.value)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.db"]


async def test_a_schema_newer_than_this_code_asks_to_upgrade_and_changes_nothing(
    tmp_path: Path,
) -> None:
    path = tmp_path / "ledger.db"
    async with await open_ledger(path):
        pass
    with sqlite3.connect(path) as db:
        db.execute("UPDATE alembic_version SET version_num = '9999_from_the_future'")
    before = path.read_bytes()
    with pytest.raises(SchemaTooNewError) as raised:
        await open_ledger(path)
    message = str(raised.value)
    assert str(path) in message and "9999_from_the_future" in message
    assert "upgrade modelhaul" in message
    assert path.read_bytes() == before


def test_a_folder_without_write_permission_is_named_in_the_error(tmp_path: Path) -> None:
    folder = tmp_path / "locked"
    folder.mkdir()
    folder.chmod(0o555)
    script = (
        "import asyncio, sys\n"
        "from storage import open_ledger, LedgerOpenError\n"
        "try:\n"
        f"    asyncio.run(open_ledger({str(folder / 'ledger.db')!r}))\n"
        "except LedgerOpenError as e:\n"
        "    print(e); sys.exit(3)\n"
    )
    command = [PYTHON, "-c", script]
    if os.geteuid() == 0:
        # root ignores permission bits; drop the capabilities that let it, as the CI runs as root
        setpriv = system_program("setpriv")
        caps = "-dac_override,-dac_read_search,-fowner"
        command = [setpriv, f"--inh-caps={caps}", f"--bounding-set={caps}", *command]
    result = subprocess.run(command, capture_output=True, text=True, env=python_env())
    assert result.returncode == 3, result.stderr
    assert f"folder {folder} is not writable" in result.stdout
    assert list(folder.iterdir()) == []


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("://nowhere", "malformed database URL"),
        ("nosuchdb://host/name", "unsupported database URL"),
        ("sqlite://", "in-memory SQLite ledger cannot be shared"),
        ("   ", "empty ledger path or URL"),
    ],
)
async def test_a_bad_url_gets_a_clear_error(url: str, expected: str) -> None:
    with pytest.raises(LedgerOpenError, match=expected) as raised:
        await open_ledger(url)
    assert url.strip() in str(raised.value)


async def test_a_folder_given_as_the_ledger_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(LedgerOpenError, match="it is a folder"):
        await open_ledger(tmp_path)
