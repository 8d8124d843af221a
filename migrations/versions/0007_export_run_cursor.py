"""exporter walks runs by store time (run cursor, updated_at index); export_runs by run

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-22
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_workflow_runs_updated_at", "workflow_runs", ["updated_at"])
    op.create_index("ix_export_runs_run", "export_runs", ["run_id"])
    with op.batch_alter_table("export_cursors") as batch:
        batch.add_column(sa.Column("run_cursor", sa.DateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("export_cursors") as batch:
        batch.drop_column("run_cursor")
    op.drop_index("ix_export_runs_run", table_name="export_runs")
    op.drop_index("ix_workflow_runs_updated_at", table_name="workflow_runs")
