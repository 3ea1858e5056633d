"""Alembic, driven from code: find the scripts, refuse a newer schema, upgrade to head.

Opening a ledger that is already at ``HEAD_REVISION`` costs one SELECT; Alembic itself is
imported only when there is something to migrate (it is a tenth of a second of start-up).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection

if TYPE_CHECKING:
    from alembic.config import Config

# The newest revision in migrations/versions; tests/test_migrations.py keeps the two equal.
HEAD_REVISION = "0008"

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
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(script_location()))
    return cfg


def head_revision() -> str:
    """The newest revision the scripts define."""
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:
        raise RuntimeError("the migration scripts have no head revision")
    return head


def current_revision(connection: Connection) -> str | None:
    """The ledger's schema revision (None for an empty database)."""
    if not inspect(connection).has_table("alembic_version"):
        return None
    return connection.execute(text("SELECT version_num FROM alembic_version")).scalar()


def is_known(revision: str) -> bool:
    """Whether this code's scripts define ``revision`` (a newer modelhaul's would not)."""
    from alembic.script import ScriptDirectory
    from alembic.util.exc import CommandError

    try:
        ScriptDirectory.from_config(alembic_config()).get_revision(revision)
    except CommandError:
        return False
    return True


def upgrade_to_head(connection: Connection) -> None:
    """Apply every missing migration on ``connection`` (inside the caller's transaction)."""
    from alembic import command

    cfg = alembic_config()
    cfg.attributes["connection"] = connection
    command.upgrade(cfg, "head")
