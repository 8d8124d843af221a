"""the linker's work queue (runs to read, shared by collectors) and its start-time cursor

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-04
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("namespace_state") as batch:
        batch.add_column(sa.Column("start_cursor", sa.DateTime(), nullable=True))
    op.create_table(
        "link_work_queue",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("namespace", sa.String(255), nullable=False),
        sa.Column("workflow_id", sa.String(1000), nullable=False),
        sa.Column("run_id", sa.String(64), nullable=False),
        sa.Column("requested_at", sa.DateTime(), nullable=True),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("due_at", sa.DateTime(), nullable=False),
        sa.Column("read_at", sa.DateTime(), nullable=True),
        sa.Column("claimed_by", sa.String(64), nullable=True),
        sa.Column("claimed_at", sa.DateTime(), nullable=True),
        sa.Column("claim_expires_at", sa.DateTime(), nullable=True),
        sa.UniqueConstraint("namespace", "run_id", name="uq_link_work_queue_run"),
    )
    op.create_index(
        "ix_link_work_queue_requested", "link_work_queue", ["namespace", "priority", "requested_at"]
    )
    op.create_index("ix_link_work_queue_due", "link_work_queue", ["namespace", "due_at"])
    op.create_index("ix_link_work_queue_run_id", "link_work_queue", ["run_id"])
    # Runs an earlier linker left running are re-read by staleness from now on (they were
    # re-read on a timer, which kept no row).
    now = datetime.now(UTC).replace(tzinfo=None)
    op.execute(
        sa.text(
            "INSERT INTO link_work_queue (namespace, workflow_id, run_id, priority, due_at) "
            "SELECT namespace, workflow_id, run_id, 2, :now FROM workflow_runs "
            "WHERE status = 'running'"
        ).bindparams(sa.bindparam("now", now, type_=sa.DateTime()))
    )


def downgrade() -> None:
    op.drop_table("link_work_queue")
    with op.batch_alter_table("namespace_state") as batch:
        batch.drop_column("start_cursor")
