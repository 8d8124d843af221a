"""spans waiting for a namespace (partial index); trees with calls left in flight are
summarized again

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-23
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_NAMESPACE_UNKNOWN = "namespace IS NULL AND (run_id IS NOT NULL OR request_id IS NOT NULL)"


def upgrade() -> None:
    op.create_index(
        "ix_spans_namespace_unknown",
        "spans",
        ["id"],
        postgresql_where=sa.text(_NAMESPACE_UNKNOWN),
        sqlite_where=sa.text(_NAMESPACE_UNKNOWN),
    )
    # A closed run's call that its history leaves running now ends (settled or
    # abandoned): the figures of those trees change, so they are summarized again.
    op.execute(
        "UPDATE workflow_runs SET summary_dirty = TRUE WHERE status <> 'running' AND id IN "
        "(SELECT run_pk FROM calls WHERE status = 'running')"
    )


def downgrade() -> None:
    op.drop_index("ix_spans_namespace_unknown", table_name="spans")
