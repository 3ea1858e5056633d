"""Keep the live bandwidth limit (a rate or a schedule) where every process reads it.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "limits",
        sa.Column("scope", sa.String(length=32), nullable=False),
        sa.Column("rate", sa.BigInteger(), nullable=True),
        sa.Column("schedule", sa.JSON(), nullable=True),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("scope", name=op.f("pk_limits")),
    )


def downgrade() -> None:
    op.drop_table("limits")
