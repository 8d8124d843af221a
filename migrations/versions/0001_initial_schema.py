"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-22
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "links",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("source", sa.String(length=32), nullable=False),
        sa.Column("caller_namespace", sa.String(length=255), nullable=False),
        sa.Column("caller_workflow_id", sa.String(length=1000), nullable=False),
        sa.Column("caller_run_id", sa.String(length=64), nullable=False),
        sa.Column("caller_event_id", sa.BigInteger(), nullable=False),
        sa.Column("caller_request_id", sa.String(length=255), nullable=False),
        sa.Column("caller_activity_id", sa.String(length=1000), nullable=False),
        sa.Column("handler_namespace", sa.String(length=255), nullable=False),
        sa.Column("handler_workflow_id", sa.String(length=1000), nullable=False),
        sa.Column("handler_run_id", sa.String(length=64), nullable=False),
        sa.Column("verified", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint(
            "source",
            "caller_namespace",
            "caller_run_id",
            "caller_event_id",
            "caller_request_id",
            "caller_activity_id",
            "handler_namespace",
            "handler_run_id",
            name="uq_links_edge",
        ),
    )
    with op.batch_alter_table("links", schema=None) as batch_op:
        batch_op.create_index(
            "ix_links_caller", ["caller_namespace", "caller_run_id"], unique=False
        )
        batch_op.create_index(
            "ix_links_handler", ["handler_namespace", "handler_run_id"], unique=False
        )
        batch_op.create_index("ix_links_request_id", ["caller_request_id"], unique=False)

    op.create_table(
        "namespace_state",
        sa.Column("namespace", sa.String(length=255), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("close_cursor", sa.DateTime(), nullable=True),
        sa.Column("last_poll_at", sa.DateTime(), nullable=True),
        sa.Column("runs_linked", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("namespace"),
    )
    op.create_table(
        "nexus_endpoints",
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("target_namespace", sa.String(length=255), nullable=False),
        sa.Column("target_task_queue", sa.String(length=1000), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    op.create_table(
        "spans",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("trace_id", sa.String(length=32), nullable=False),
        sa.Column("span_id", sa.String(length=16), nullable=False),
        sa.Column("parent_span_id", sa.String(length=16), nullable=True),
        sa.Column("name", sa.String(length=1000), nullable=False),
        sa.Column("kind", sa.Integer(), nullable=False),
        sa.Column("service_name", sa.String(length=255), nullable=True),
        sa.Column("start_time_unix_nano", sa.BigInteger(), nullable=False),
        sa.Column("end_time_unix_nano", sa.BigInteger(), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=False),
        sa.Column("status_message", sa.Text(), nullable=True),
        sa.Column("namespace", sa.String(length=255), nullable=True),
        sa.Column("workflow_id", sa.String(length=1000), nullable=True),
        sa.Column("run_id", sa.String(length=64), nullable=True),
        sa.Column("request_id", sa.String(length=255), nullable=True),
        sa.Column("attributes", sa.Text(), nullable=False),
        sa.Column("resource", sa.Text(), nullable=False),
        sa.Column("events", sa.Text(), nullable=False),
        sa.Column("links", sa.Text(), nullable=False),
        sa.Column("received_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("trace_id", "span_id", name="uq_spans_trace_span"),
    )
    with op.batch_alter_table("spans", schema=None) as batch_op:
        batch_op.create_index("ix_spans_request_id", ["request_id"], unique=False)
        batch_op.create_index("ix_spans_workflow", ["namespace", "workflow_id"], unique=False)

    op.create_table(
        "workflow_runs",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("namespace", sa.String(length=255), nullable=False),
        sa.Column("workflow_id", sa.String(length=1000), nullable=False),
        sa.Column("run_id", sa.String(length=64), nullable=False),
        sa.Column("workflow_type", sa.String(length=1000), nullable=False),
        sa.Column("task_queue", sa.String(length=1000), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("start_time", sa.DateTime(), nullable=False),
        sa.Column("close_time", sa.DateTime(), nullable=True),
        sa.Column("error_type", sa.String(length=1000), nullable=True),
        sa.Column("error_message", sa.Text(), nullable=True),
        sa.Column("parent_namespace", sa.String(length=255), nullable=True),
        sa.Column("parent_workflow_id", sa.String(length=1000), nullable=True),
        sa.Column("parent_run_id", sa.String(length=64), nullable=True),
        sa.Column("parent_event_id", sa.BigInteger(), nullable=True),
        sa.Column("history_length", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("namespace", "run_id", name="uq_workflow_runs_namespace_run"),
    )
    with op.batch_alter_table("workflow_runs", schema=None) as batch_op:
        batch_op.create_index(
            "ix_workflow_runs_namespace_workflow", ["namespace", "workflow_id"], unique=False
        )
        batch_op.create_index("ix_workflow_runs_start_time", ["start_time"], unique=False)

    op.create_table(
        "calls",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("run_pk", sa.Integer(), nullable=False),
        sa.Column("event_id", sa.BigInteger(), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=1000), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("start_time", sa.DateTime(), nullable=False),
        sa.Column("end_time", sa.DateTime(), nullable=True),
        sa.Column("error_type", sa.String(length=1000), nullable=True),
        sa.Column("error_message", sa.Text(), nullable=True),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("activity_id", sa.String(length=1000), nullable=True),
        sa.Column("endpoint", sa.String(length=255), nullable=True),
        sa.Column("service", sa.String(length=1000), nullable=True),
        sa.Column("operation", sa.String(length=1000), nullable=True),
        sa.Column("request_id", sa.String(length=255), nullable=True),
        sa.Column("operation_token", sa.Text(), nullable=True),
        sa.Column("traceparent", sa.String(length=128), nullable=True),
        sa.ForeignKeyConstraint(["run_pk"], ["workflow_runs.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("run_pk", "event_id", name="uq_calls_run_event"),
    )
    with op.batch_alter_table("calls", schema=None) as batch_op:
        batch_op.create_index("ix_calls_request_id", ["request_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("calls", schema=None) as batch_op:
        batch_op.drop_index("ix_calls_request_id")

    op.drop_table("calls")
    with op.batch_alter_table("workflow_runs", schema=None) as batch_op:
        batch_op.drop_index("ix_workflow_runs_start_time")
        batch_op.drop_index("ix_workflow_runs_namespace_workflow")

    op.drop_table("workflow_runs")
    with op.batch_alter_table("spans", schema=None) as batch_op:
        batch_op.drop_index("ix_spans_workflow")
        batch_op.drop_index("ix_spans_request_id")

    op.drop_table("spans")
    op.drop_table("nexus_endpoints")
    op.drop_table("namespace_state")
    with op.batch_alter_table("links", schema=None) as batch_op:
        batch_op.drop_index("ix_links_request_id")
        batch_op.drop_index("ix_links_handler")
        batch_op.drop_index("ix_links_caller")

    op.drop_table("links")
