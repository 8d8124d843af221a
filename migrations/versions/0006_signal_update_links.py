"""signal and update edges: name, target event and time on links

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-22
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


_OLD_EDGE = [
    "source",
    "caller_namespace",
    "caller_run_id",
    "caller_event_id",
    "caller_request_id",
    "caller_activity_id",
    "handler_namespace",
    "handler_run_id",
]


def upgrade() -> None:
    with op.batch_alter_table("links") as batch:
        batch.add_column(
            sa.Column("detail", sa.String(length=1000), server_default="", nullable=False)
        )
        batch.add_column(
            sa.Column("target_event_id", sa.BigInteger(), server_default="0", nullable=False)
        )
        batch.add_column(sa.Column("event_time", sa.DateTime(), nullable=True))
        # A signal and an update from the same call to the same run are two edges.
        batch.drop_constraint("uq_links_edge", type_="unique")
        batch.create_unique_constraint("uq_links_edge", [*_OLD_EDGE, "kind", "target_event_id"])


def downgrade() -> None:
    op.execute("DELETE FROM links WHERE kind IN ('signal', 'update')")
    with op.batch_alter_table("links") as batch:
        batch.drop_constraint("uq_links_edge", type_="unique")
        batch.create_unique_constraint("uq_links_edge", _OLD_EDGE)
        batch.drop_column("event_time")
        batch.drop_column("target_event_id")
        batch.drop_column("detail")
