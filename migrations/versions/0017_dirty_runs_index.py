"""dirty runs: a partial index of the runs waiting to be summarized

Without fresh statistics PostgreSQL scanned every run in id order to find the few dirty
ones (about 170 ms at a million runs, before every search and map request).

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-04
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0017"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_index("ix_workflow_runs_summary_dirty", table_name="workflow_runs")
    op.create_index(
        "ix_workflow_runs_dirty",
        "workflow_runs",
        ["id"],
        postgresql_where=sa.text("summary_dirty IS true"),
        sqlite_where=sa.text("summary_dirty IS 1"),
    )


def downgrade() -> None:
    op.drop_index("ix_workflow_runs_dirty", table_name="workflow_runs")
    op.create_index("ix_workflow_runs_summary_dirty", "workflow_runs", ["summary_dirty"])
