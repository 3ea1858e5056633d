"""Alembic, driven from code: find the scripts, refuse a newer schema, upgrade to head.

Opening a ledger that is already at ``HEAD_REVISION`` costs one SELECT. An empty database is
built from the models and stamped at head (Alembic's own recipe for a fresh database,
"create_all, then stamp"), without importing Alembic: importing it (with Mako and Pygments)
and replaying eight revisions took a quarter of a second of a first ``modelhaul get``, on the
path to its first request. tests/test_migrations.py keeps the two routes to head equal.
Alembic itself is imported only when an older ledger has something to migrate.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Column, MetaData, PrimaryKeyConstraint, String, Table, inspect, text
from sqlalchemy.engine import Connection

from storage.models import METADATA

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


def is_empty(connection: Connection) -> bool:
    """Whether the database holds no table at all (a new ledger)."""
    return not inspect(connection).get_table_names()


def create_at_head(connection: Connection) -> None:
    """Build the head schema in an empty database from the models, and stamp it at
    ``HEAD_REVISION`` exactly as Alembic's ``stamp`` would, so that later revisions apply."""
    METADATA.create_all(connection)
    # Alembic's own definition of its version table (alembic.runtime.migration).
    version = Table(
        "alembic_version",
        MetaData(),
        Column("version_num", String(32), nullable=False),
        PrimaryKeyConstraint("version_num", name="alembic_version_pkc"),
    )
    version.create(connection)
    connection.execute(version.insert().values(version_num=HEAD_REVISION))


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
