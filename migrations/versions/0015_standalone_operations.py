"""standalone Nexus operations: runs and tree summaries say what kind of thing they are

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-04
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TABLES = ("workflow_runs", "tree_summaries")


def upgrade() -> None:
    for table in _TABLES:
        with op.batch_alter_table(table) as batch:
            batch.add_column(
                sa.Column("kind", sa.String(length=32), server_default="workflow", nullable=False)
            )
    # "Standalone operations only" reads the newest of a few rows among many.
    op.create_index("ix_tree_summaries_kind_start", "tree_summaries", ["kind", "start_time"])


def downgrade() -> None:
    op.drop_index("ix_tree_summaries_kind_start", table_name="tree_summaries")
    for table in _TABLES:
        with op.batch_alter_table(table) as batch:
            batch.drop_column("kind")
