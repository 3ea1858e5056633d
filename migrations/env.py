"""Alembic environment for the modelhaul ledger.

modelhaul runs migrations itself when it opens a ledger, handing its connection over in
``config.attributes["connection"]``. For developers, ``alembic -x url=sqlite:///x.db upgrade
head`` (or ``revision --autogenerate``) works from the checkout with the bundled alembic.ini.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine, pool

from storage.models import METADATA

config = context.config
target_metadata = METADATA


def _run(connection) -> None:  # type: ignore[no-untyped-def]
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=True,  # SQLite can only ALTER through table copies
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_offline() -> None:
    """Emit SQL to stdout (``alembic upgrade head --sql``)."""
    url = context.get_x_argument(as_dictionary=True).get("url", "sqlite:///ledger.db")
    context.configure(url=url, target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    """Migrate on the connection modelhaul passed in, or on ``-x url=...``."""
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    url = context.get_x_argument(as_dictionary=True).get("url", "sqlite:///ledger.db")
    engine = create_engine(url, poolclass=pool.NullPool)
    with engine.begin() as conn:
        _run(conn)


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
