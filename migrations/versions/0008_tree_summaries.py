"""tree summaries, terms and edges for search and the map at any size; graph indexes

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-23
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("workflow_runs") as batch:
        batch.add_column(sa.Column("root_pk", sa.Integer(), nullable=True))
        # Every stored run is summarized once after the upgrade.
        batch.add_column(
            sa.Column("summary_dirty", sa.Boolean(), nullable=False, server_default=sa.true())
        )
    op.create_index("ix_workflow_runs_run_id", "workflow_runs", ["run_id"])
    op.create_index("ix_workflow_runs_workflow_id", "workflow_runs", ["workflow_id"])
    op.create_index("ix_workflow_runs_parent_run", "workflow_runs", ["parent_run_id"])
    op.create_index("ix_workflow_runs_root", "workflow_runs", ["root_pk"])
    op.create_index("ix_workflow_runs_summary_dirty", "workflow_runs", ["summary_dirty"])
    op.create_index("ix_links_caller_run", "links", ["caller_run_id"])
    op.create_index("ix_links_handler_run", "links", ["handler_run_id"])
    op.create_index("ix_links_handler_workflow", "links", ["handler_workflow_id"])
    op.create_table(
        "tree_summaries",
        sa.Column(
            "root_pk",
            sa.Integer(),
            sa.ForeignKey("workflow_runs.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("namespace", sa.String(255), nullable=False),
        sa.Column("workflow_id", sa.String(1000), nullable=False),
        sa.Column("run_id", sa.String(64), nullable=False),
        sa.Column("workflow_type", sa.String(1000), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("start_time", sa.DateTime(), nullable=False),
        sa.Column("end_time", sa.DateTime(), nullable=True),
        sa.Column("caller_duration_s", sa.Float(), nullable=True),
        sa.Column("tree_start", sa.DateTime(), nullable=False),
        sa.Column("tree_end", sa.DateTime(), nullable=True),
        sa.Column("namespaces", sa.Text(), nullable=False),
        sa.Column("node_count", sa.Integer(), nullable=False),
        sa.Column("error_count", sa.Integer(), nullable=False),
        sa.Column("first_error", sa.Text(), nullable=True),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
    )
    op.create_index("ix_tree_summaries_start", "tree_summaries", ["start_time"])
    op.create_index("ix_tree_summaries_status_start", "tree_summaries", ["status", "start_time"])
    op.create_index("ix_tree_summaries_caller_duration", "tree_summaries", ["caller_duration_s"])
    op.create_table(
        "tree_terms",
        sa.Column("field", sa.String(16), primary_key=True),
        sa.Column("value", sa.String(1000), primary_key=True),
        sa.Column(
            "root_pk",
            sa.Integer(),
            sa.ForeignKey("tree_summaries.root_pk", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("start_time", sa.DateTime(), nullable=False),
    )
    op.create_index("ix_tree_terms_value_start", "tree_terms", ["field", "value", "start_time"])
    op.create_index("ix_tree_terms_root", "tree_terms", ["root_pk"])
    op.create_table(
        "tree_edges",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column(
            "root_pk",
            sa.Integer(),
            sa.ForeignKey("tree_summaries.root_pk", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("start_time", sa.DateTime(), nullable=False),
        sa.Column("caller", sa.String(255), nullable=False),
        sa.Column("callee", sa.String(255), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("failed", sa.Boolean(), nullable=False),
        sa.Column("latency_bucket", sa.Integer(), nullable=True),
    )
    op.create_index(
        "ix_tree_edges_map",
        "tree_edges",
        ["start_time", "caller", "callee", "kind", "failed", "latency_bucket"],
    )
    op.create_index("ix_tree_edges_root", "tree_edges", ["root_pk"])
    op.create_table(
        "edge_hours",
        sa.Column("hour", sa.DateTime(), primary_key=True),
        sa.Column("caller", sa.String(255), primary_key=True),
        sa.Column("callee", sa.String(255), primary_key=True),
        sa.Column("kind", sa.String(32), primary_key=True),
        sa.Column("failed", sa.Boolean(), primary_key=True),
        sa.Column("latency_bucket", sa.Integer(), primary_key=True),
        sa.Column("calls", sa.BigInteger(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("edge_hours")
    op.drop_index("ix_tree_edges_root", table_name="tree_edges")
    op.drop_index("ix_tree_edges_map", table_name="tree_edges")
    op.drop_table("tree_edges")
    op.drop_index("ix_tree_terms_root", table_name="tree_terms")
    op.drop_index("ix_tree_terms_value_start", table_name="tree_terms")
    op.drop_table("tree_terms")
    for name in (
        "ix_tree_summaries_caller_duration",
        "ix_tree_summaries_status_start",
        "ix_tree_summaries_start",
    ):
        op.drop_index(name, table_name="tree_summaries")
    op.drop_table("tree_summaries")
    for name in ("ix_links_handler_workflow", "ix_links_handler_run", "ix_links_caller_run"):
        op.drop_index(name, table_name="links")
    for name in (
        "ix_workflow_runs_summary_dirty",
        "ix_workflow_runs_root",
        "ix_workflow_runs_parent_run",
        "ix_workflow_runs_workflow_id",
        "ix_workflow_runs_run_id",
    ):
        op.drop_index(name, table_name="workflow_runs")
    with op.batch_alter_table("workflow_runs") as batch:
        batch.drop_column("summary_dirty")
        batch.drop_column("root_pk")
