"""Alembic, driven from code: find the scripts, refuse a newer schema, upgrade to head."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util.exc import CommandError
from sqlalchemy.engine import Connection

_HERE = Path(__file__).resolve().parent


def script_location() -> Path:
    """Where the Alembic scripts are: inside the installed wheel, else in the checkout."""
    for candidate in (_HERE / "_migrations", _HERE.parent / "migrations"):
        if (candidate / "env.py").is_file():
            return candidate
    raise FileNotFoundError(
        f"modelhaul's migration scripts are missing (looked in {_HERE / '_migrations'} and "
        f"{_HERE.parent / 'migrations'}); reinstall modelhaul"
    )


def alembic_config() -> Config:
    """An Alembic config pointing at our scripts, with no alembic.ini needed."""
    cfg = Config()
    cfg.set_main_option("script_location", str(script_location()))
    return cfg


def head_revision() -> str:
    """The newest revision this code knows."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None, "migrations have no head revision"
    return head


def unknown_revision(connection: Connection) -> str | None:
    """The ledger's revision when this code does not know it (a newer modelhaul wrote it)."""
    current = MigrationContext.configure(connection).get_current_revision()
    if current is None:
        return None
    try:
        ScriptDirectory.from_config(alembic_config()).get_revision(current)
    except CommandError:
        return current
    return None


def upgrade_to_head(connection: Connection) -> None:
    """Apply every missing migration on ``connection`` (inside the caller's transaction)."""
    cfg = alembic_config()
    cfg.attributes["connection"] = connection
    command.upgrade(cfg, "head")
