"""span limits: dropped attribute, event and link counts on spans; the readiness probe row

Revision ID: 0010
Revises: 0008
Create Date: 2026-11-23
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_DROPPED = ("dropped_attributes_count", "dropped_events_count", "dropped_links_count")


def upgrade() -> None:
    with op.batch_alter_table("spans") as batch:
        for column in _DROPPED:
            batch.add_column(sa.Column(column, sa.Integer(), server_default="0", nullable=False))
    op.create_table(
        "store_probes",
        sa.Column("name", sa.String(length=64), primary_key=True),
        sa.Column("written_at", sa.DateTime(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("store_probes")
    with op.batch_alter_table("spans") as batch:
        for column in reversed(_DROPPED):
            batch.drop_column(column)
