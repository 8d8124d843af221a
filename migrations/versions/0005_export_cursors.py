"""export cursors: per-destination progress of the OTLP exporter

Revision ID: 0005
Revises: 0002
Create Date: 2026-11-22
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "export_cursors",
        sa.Column("destination", sa.String(length=255), nullable=False),
        sa.Column("span_cursor", sa.BigInteger(), nullable=False),
        sa.Column("span_gaps", sa.Text(), nullable=False),
        sa.Column("spans_exported", sa.BigInteger(), nullable=False),
        sa.Column("runs_synthesized", sa.BigInteger(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("destination"),
    )
    op.create_table(
        "export_runs",
        sa.Column("destination", sa.String(length=255), nullable=False),
        sa.Column("namespace", sa.String(length=255), nullable=False),
        sa.Column("run_id", sa.String(length=64), nullable=False),
        sa.Column("synthesized", sa.Boolean(), nullable=False),
        sa.Column("done_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("destination", "namespace", "run_id"),
    )


def downgrade() -> None:
    op.drop_table("export_runs")
    op.drop_table("export_cursors")
