"""SQLAlchemy models of the store's tables. The schema itself is owned by the Alembic
migrations in ``migrations/versions``; a test checks that the two agree."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy import true as sa_true
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

__all__ = [
    "Base",
    "Call",
    "CollectorInstance",
    "EdgeHour",
    "ExportCursor",
    "ExportRun",
    "Link",
    "LinkWork",
    "NamespaceLease",
    "NamespaceState",
    "NexusEndpointRow",
    "PendingState",
    "RunWait",
    "Span",
    "StoreProbe",
    "TreeEdge",
    "TreeSummary",
    "TreeTerm",
    "UTCDateTime",
    "WorkflowRun",
]


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in, aware UTC datetimes out, on SQLite and PostgreSQL alike."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store; use UTC-aware datetimes")
        if value.tzinfo is not UTC:  # the common case skips the conversion (hot on ingest)
            value = value.astimezone(UTC)
        return value.replace(tzinfo=None)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime)
        return value.replace(tzinfo=UTC)


class Base(DeclarativeBase):
    """Declarative base of every table."""


class RunIdentity:
    """The columns that name a run and say where it stands: a run's own, and copied onto
    its tree's summary so search filters and sorts without a join."""

    namespace: Mapped[str] = mapped_column(String(255))
    workflow_id: Mapped[str] = mapped_column(String(1000))
    run_id: Mapped[str] = mapped_column(String(64))
    workflow_type: Mapped[str] = mapped_column(String(1000))
    status: Mapped[str] = mapped_column(String(16))
    start_time: Mapped[datetime] = mapped_column(UTCDateTime())
    # ``workflow``, or ``nexus_operation`` for a standalone Nexus operation (started by a
    # client, no workflow): its operation id and run id stand where a workflow's would.
    kind: Mapped[str] = mapped_column(String(32), default="workflow", server_default="workflow")


class WorkflowRun(RunIdentity, Base):
    """One workflow execution (a run), as its history shows it."""

    __tablename__ = "workflow_runs"
    __table_args__ = (
        UniqueConstraint("namespace", "run_id", name="uq_workflow_runs_namespace_run"),
        Index("ix_workflow_runs_namespace_workflow", "namespace", "workflow_id"),
        Index("ix_workflow_runs_start_time", "start_time"),
        # The exporter walks runs in the order they were stored (see ExportCursor).
        Index("ix_workflow_runs_updated_at", "updated_at"),
        # The call graph looks runs up by run id, workflow id or parent alone.
        Index("ix_workflow_runs_run_id", "run_id"),
        Index("ix_workflow_runs_workflow_id", "workflow_id"),
        Index("ix_workflow_runs_parent_run", "parent_run_id"),
        Index("ix_workflow_runs_root", "root_pk"),
        # Dirty runs are few among millions: an index of those alone, in the order the
        # summaries job takes them, whatever the planner's statistics say.
        Index(
            "ix_workflow_runs_dirty",
            "id",
            postgresql_where=text("summary_dirty IS true"),
            sqlite_where=text("summary_dirty IS 1"),
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    task_queue: Mapped[str] = mapped_column(String(1000), default="")
    close_time: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    error_type: Mapped[str | None] = mapped_column(String(1000), nullable=True)
    error_message: Mapped[str | None] = mapped_column(Text, nullable=True)
    # tracer.domain.ErrorKind, read from the whole failure (NULL: stored before it was).
    error_kind: Mapped[str | None] = mapped_column(String(32), nullable=True)
    # Set for same-namespace children, from WorkflowExecutionStarted.parent_workflow_execution.
    parent_namespace: Mapped[str | None] = mapped_column(String(255), nullable=True)
    parent_workflow_id: Mapped[str | None] = mapped_column(String(1000), nullable=True)
    parent_run_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    parent_event_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    # How many history events the linker has read: a closed run with this many is final.
    history_length: Mapped[int] = mapped_column(BigInteger, default=0)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    # The root run of the tree this run belongs to, as last summarized (see TreeSummary),
    # and whether a write since then may have changed that tree.
    root_pk: Mapped[int | None] = mapped_column(Integer, nullable=True)
    summary_dirty: Mapped[bool] = mapped_column(Boolean, default=True, server_default=sa_true())


class Call(Base):
    """A call a workflow made: activity, Nexus operation, child workflow, signal, update."""

    __tablename__ = "calls"
    __table_args__ = (
        UniqueConstraint("run_pk", "event_id", name="uq_calls_run_event"),
        Index("ix_calls_request_id", "request_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_pk: Mapped[int] = mapped_column(ForeignKey("workflow_runs.id", ondelete="CASCADE"))
    # The event that scheduled or initiated the call in the caller's history.
    event_id: Mapped[int] = mapped_column(BigInteger)
    kind: Mapped[str] = mapped_column(String(32))
    name: Mapped[str] = mapped_column(String(1000))
    status: Mapped[str] = mapped_column(String(16))
    start_time: Mapped[datetime] = mapped_column(UTCDateTime())
    end_time: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    error_type: Mapped[str | None] = mapped_column(String(1000), nullable=True)
    error_message: Mapped[str | None] = mapped_column(Text, nullable=True)
    # tracer.domain.ErrorKind, read from the whole failure (NULL: stored before it was).
    error_kind: Mapped[str | None] = mapped_column(String(32), nullable=True)
    attempt: Mapped[int] = mapped_column(Integer, default=1)
    activity_id: Mapped[str | None] = mapped_column(String(1000), nullable=True)
    endpoint: Mapped[str | None] = mapped_column(String(255), nullable=True)
    service: Mapped[str | None] = mapped_column(String(1000), nullable=True)
    operation: Mapped[str | None] = mapped_column(String(1000), nullable=True)
    request_id: Mapped[str | None] = mapped_column(String(255), nullable=True)
    operation_token: Mapped[str | None] = mapped_column(Text, nullable=True)
    # The W3C traceparent the caller sent in the Nexus header, when it traces.
    traceparent: Mapped[str | None] = mapped_column(String(128), nullable=True)


class Link(Base):
    """A caller-to-handler edge, as one source recorded it.

    Each source (caller history, handler history, operation token, header, span) is kept
    as its own row, so no source can overwrite another; the tree merges them. The caller
    side is named by its run and by whichever of event id, request id or activity id the
    source knew (the others are empty).
    """

    __tablename__ = "links"
    __table_args__ = (
        UniqueConstraint(
            "source",
            "caller_namespace",
            "caller_run_id",
            "caller_event_id",
            "caller_request_id",
            "caller_activity_id",
            "handler_namespace",
            "handler_run_id",
            "kind",
            "target_event_id",
            name="uq_links_edge",
        ),
        Index("ix_links_caller", "caller_namespace", "caller_run_id"),
        Index("ix_links_handler", "handler_namespace", "handler_run_id"),
        Index("ix_links_request_id", "caller_request_id"),
        # The call graph walks links by run id alone, in both directions.
        Index("ix_links_caller_run", "caller_run_id"),
        Index("ix_links_handler_run", "handler_run_id"),
        Index("ix_links_handler_workflow", "handler_workflow_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(32))  # nexus | activity_wrapper | child
    source: Mapped[str] = mapped_column(String(32))
    caller_namespace: Mapped[str] = mapped_column(String(255))
    caller_workflow_id: Mapped[str] = mapped_column(String(1000))
    caller_run_id: Mapped[str] = mapped_column(String(64))
    caller_event_id: Mapped[int] = mapped_column(BigInteger, default=0)
    caller_request_id: Mapped[str] = mapped_column(String(255), default="")
    caller_activity_id: Mapped[str] = mapped_column(String(1000), default="")
    handler_namespace: Mapped[str] = mapped_column(String(255))
    handler_workflow_id: Mapped[str] = mapped_column(String(1000))
    handler_run_id: Mapped[str] = mapped_column(String(64))
    verified: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    # Signal and update edges: the signal or update name, the event that recorded it in the
    # target's history (0 for edges that start the target) and when it happened.
    detail: Mapped[str] = mapped_column(String(1000), default="", server_default="")
    target_event_id: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    event_time: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class NexusEndpointRow(Base):
    """A Nexus endpoint and the namespace it targets, read from the operator API."""

    __tablename__ = "nexus_endpoints"

    name: Mapped[str] = mapped_column(String(255), primary_key=True)
    target_namespace: Mapped[str] = mapped_column(String(255))
    target_task_queue: Mapped[str] = mapped_column(String(1000))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class NamespaceState(Base):
    """The linker's progress and health in one namespace."""

    __tablename__ = "namespace_state"

    namespace: Mapped[str] = mapped_column(String(255), primary_key=True)
    status: Mapped[str] = mapped_column(String(16))  # starting | ok | error
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    # Where discovery resumes (after a restart too): runs closed, and runs started, at or
    # after these times are listed again (see tracer.link's discovery).
    close_cursor: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    start_cursor: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    last_poll_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    runs_linked: Mapped[int] = mapped_column(BigInteger, default=0)


class PendingState(Base):
    """What Temporal last said of an open run's pending calls (``DescribeWorkflowExecution``):
    histories do not hold it. ``calls`` is JSON, ``{"nexus:<scheduled event id>" |
    "activity:<activity id>": <the contract's pending object>}``."""

    __tablename__ = "pending_states"

    run_pk: Mapped[int] = mapped_column(
        ForeignKey("workflow_runs.id", ondelete="CASCADE"), primary_key=True
    )
    read_at: Mapped[datetime] = mapped_column(UTCDateTime())
    calls: Mapped[str] = mapped_column(Text)


class RunWait(Base):
    """A timer, an activity's retries, a signal or update a run received (see
    ``WaitFacts``): what the tree page labels a gap in a workflow's lane with."""

    __tablename__ = "run_waits"

    run_pk: Mapped[int] = mapped_column(
        ForeignKey("workflow_runs.id", ondelete="CASCADE"), primary_key=True
    )
    event_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    start_time: Mapped[datetime] = mapped_column(UTCDateTime())
    end_time: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    detail: Mapped[str] = mapped_column(String(1000), default="")


class LinkWork(Base):
    """A run the linker has to read: every open run it knows, and runs evidence points at.

    Collectors linking one namespace share its rows: each claims a batch (``FOR UPDATE
    SKIP LOCKED`` on PostgreSQL) until ``claim_expires_at``, so they read disjoint runs and
    a dead collector's claims go to another one when they expire. A run that closed is
    read once more and leaves the queue.
    """

    __tablename__ = "link_work_queue"
    __table_args__ = (
        UniqueConstraint("namespace", "run_id", name="uq_link_work_queue_run"),
        # Evidence first, oldest request first; then the stalest runs.
        Index("ix_link_work_queue_requested", "namespace", "priority", "requested_at"),
        Index("ix_link_work_queue_due", "namespace", "due_at"),
        # Spans name a run by its id alone.
        Index("ix_link_work_queue_run_id", "run_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    namespace: Mapped[str] = mapped_column(String(255))
    workflow_id: Mapped[str] = mapped_column(String(1000))
    run_id: Mapped[str] = mapped_column(String(64))
    # Evidence that the run changed (null: none pending) and how urgent it is
    # (tracer.store.Priority: discovery comes before spans and page views).
    requested_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    priority: Mapped[int] = mapped_column(Integer, default=0)
    # When a re-read for staleness is due, and when the run was last read.
    due_at: Mapped[datetime] = mapped_column(UTCDateTime())
    read_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    # Which collector reads it now, since when and until when.
    claimed_by: Mapped[str | None] = mapped_column(String(64), nullable=True)
    claimed_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    claim_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class StoreProbe(Base):
    """A row readiness checks rewrite: a store that cannot commit it is not ready."""

    __tablename__ = "store_probes"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    written_at: Mapped[datetime] = mapped_column(UTCDateTime())


# Spans with no namespace yet that a stored run or Nexus call can still give one.
_NAMESPACE_UNKNOWN = "namespace IS NULL AND (run_id IS NOT NULL OR request_id IS NOT NULL)"


class Span(Base):
    """A span received over OTLP, with the Temporal identity lifted out of its attributes."""

    __tablename__ = "spans"
    __table_args__ = (
        UniqueConstraint("trace_id", "span_id", name="uq_spans_trace_span"),
        Index("ix_spans_workflow", "namespace", "workflow_id"),
        Index("ix_spans_request_id", "request_id"),
        # Spans still waiting for a namespace their run or Nexus call can give (see
        # Store.fill_span_namespaces): few, and walked by id.
        Index(
            "ix_spans_namespace_unknown",
            "id",
            postgresql_where=text(_NAMESPACE_UNKNOWN),
            sqlite_where=text(_NAMESPACE_UNKNOWN),
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    trace_id: Mapped[str] = mapped_column(String(32))
    span_id: Mapped[str] = mapped_column(String(16))
    parent_span_id: Mapped[str | None] = mapped_column(String(16), nullable=True)
    name: Mapped[str] = mapped_column(String(1000))
    kind: Mapped[int] = mapped_column(Integer, default=0)
    service_name: Mapped[str | None] = mapped_column(String(255), nullable=True)
    start_time_unix_nano: Mapped[int] = mapped_column(BigInteger)
    end_time_unix_nano: Mapped[int] = mapped_column(BigInteger)
    status_code: Mapped[int] = mapped_column(Integer, default=0)
    status_message: Mapped[str | None] = mapped_column(Text, nullable=True)
    namespace: Mapped[str | None] = mapped_column(String(255), nullable=True)
    workflow_id: Mapped[str | None] = mapped_column(String(1000), nullable=True)
    run_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    request_id: Mapped[str | None] = mapped_column(String(255), nullable=True)
    # Span and resource attributes, events and links as JSON text (OTLP/JSON shapes).
    attributes: Mapped[str] = mapped_column(Text, default="{}")
    resource: Mapped[str] = mapped_column(Text, default="{}")
    events: Mapped[str] = mapped_column(Text, default="[]")
    links: Mapped[str] = mapped_column(Text, default="[]")
    received_at: Mapped[datetime] = mapped_column(UTCDateTime())
    # OTLP's dropped counts: what the sender dropped plus what the receiver's span limits
    # dropped (OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT and friends).
    dropped_attributes_count: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    dropped_events_count: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    dropped_links_count: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


class TreeSummary(RunIdentity, Base):
    """What search shows of one call tree, kept up to date as its runs are written.

    One row per root run. The figures follow one definition each (see the README):
    ``error_count`` counts failure origins (failed nodes with no failed child),
    ``caller_duration_s`` is the root run's duration and the tree's own span runs from
    ``tree_start`` to ``tree_end``. Running trees have no end; their durations grow until
    they close and are computed when read.
    """

    __tablename__ = "tree_summaries"
    __table_args__ = (
        Index("ix_tree_summaries_start", "start_time"),
        Index("ix_tree_summaries_status_start", "status", "start_time"),
        Index("ix_tree_summaries_caller_duration", "caller_duration_s"),
        Index("ix_tree_summaries_kind_start", "kind", "start_time"),
    )

    root_pk: Mapped[int] = mapped_column(
        ForeignKey("workflow_runs.id", ondelete="CASCADE"), primary_key=True
    )
    end_time: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    caller_duration_s: Mapped[float | None] = mapped_column(Float, nullable=True)
    tree_start: Mapped[datetime] = mapped_column(UTCDateTime())
    tree_end: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    namespaces: Mapped[str] = mapped_column(Text, default="")  # sorted, comma-separated
    node_count: Mapped[int] = mapped_column(Integer, default=1)
    error_count: Mapped[int] = mapped_column(Integer, default=0)
    # The first failure origin, depth first: where a person starts reading.
    first_error: Mapped[str | None] = mapped_column(Text, nullable=True)  # JSON object
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class TreeTerm(Base):
    """A value some run of a tree has (its namespace, workflow type or workflow id), so a
    search for it finds the tree through an index and counts trees exactly."""

    __tablename__ = "tree_terms"
    __table_args__ = (
        Index("ix_tree_terms_value_start", "field", "value", "start_time"),
        # A tree's terms are replaced whenever it is summarized again.
        Index("ix_tree_terms_root", "root_pk"),
    )

    field: Mapped[str] = mapped_column(String(16), primary_key=True)
    value: Mapped[str] = mapped_column(String(1000), primary_key=True)
    root_pk: Mapped[int] = mapped_column(
        ForeignKey("tree_summaries.root_pk", ondelete="CASCADE"), primary_key=True
    )
    # The tree's start, copied so a term's trees come newest first from the index alone.
    start_time: Mapped[datetime] = mapped_column(UTCDateTime())


class TreeEdge(Base):
    """One call from one namespace into another inside a summarized tree: what the
    namespace map adds up, by an index range on time."""

    __tablename__ = "tree_edges"
    __table_args__ = (
        # Covers the map's query: it never reads the table itself.
        Index(
            "ix_tree_edges_map",
            "start_time",
            "caller",
            "callee",
            "kind",
            "failed",
            "latency_bucket",
        ),
        Index("ix_tree_edges_root", "root_pk"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    root_pk: Mapped[int] = mapped_column(ForeignKey("tree_summaries.root_pk", ondelete="CASCADE"))
    start_time: Mapped[datetime] = mapped_column(UTCDateTime())
    caller: Mapped[str] = mapped_column(String(255))
    callee: Mapped[str] = mapped_column(String(255))
    kind: Mapped[str] = mapped_column(String(32))
    failed: Mapped[bool] = mapped_column(Boolean)
    # Latency on a log scale (see tracer.query._map.latency_bucket); null while running.
    latency_bucket: Mapped[int | None] = mapped_column(Integer, nullable=True)


class EdgeHour(Base):
    """Cross-namespace calls added up per hour (of their start), kept in step with
    ``tree_edges`` as trees are summarized again or deleted: long map windows read these."""

    __tablename__ = "edge_hours"

    hour: Mapped[datetime] = mapped_column(UTCDateTime(), primary_key=True)
    caller: Mapped[str] = mapped_column(String(255), primary_key=True)
    callee: Mapped[str] = mapped_column(String(255), primary_key=True)
    kind: Mapped[str] = mapped_column(String(32), primary_key=True)
    failed: Mapped[bool] = mapped_column(Boolean, primary_key=True)
    # -1: still running (no latency yet); a key column cannot be null.
    latency_bucket: Mapped[int] = mapped_column(Integer, primary_key=True)
    calls: Mapped[int] = mapped_column(BigInteger)


class CollectorInstance(Base):
    """A running collector process; its heartbeat says it is alive."""

    __tablename__ = "collector_instances"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    description: Mapped[str] = mapped_column(String(255))  # host:pid, for people
    started_at: Mapped[datetime] = mapped_column(UTCDateTime())
    heartbeat_at: Mapped[datetime] = mapped_column(UTCDateTime())


class NamespaceLease(Base):
    """Which collector links a namespace, until when (several collectors on one database)."""

    __tablename__ = "namespace_leases"

    namespace: Mapped[str] = mapped_column(String(255), primary_key=True)
    owner: Mapped[str] = mapped_column(String(64))
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())


class ExportCursor(Base):
    """How far the OTLP exporter got with one destination: the store is its queue."""

    __tablename__ = "export_cursors"

    destination: Mapped[str] = mapped_column(String(255), primary_key=True)
    # Highest span row id delivered; rows below it that were not yet committed when it
    # moved (PostgreSQL ids are not handed out in commit order) are kept in span_gaps.
    span_cursor: Mapped[int] = mapped_column(BigInteger, default=0)
    span_gaps: Mapped[str] = mapped_column(Text, default="[]")  # JSON [[lo, hi, since], ...]
    spans_exported: Mapped[int] = mapped_column(BigInteger, default=0)
    runs_synthesized: Mapped[int] = mapped_column(BigInteger, default=0)
    # Closed runs stored (WorkflowRun.updated_at) up to here have been dealt with: each
    # round looks only at runs stored since, not at every run ever closed.
    run_cursor: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class ExportRun(Base):
    """A closed run the exporter has dealt with for one destination (synthesized or not)."""

    __tablename__ = "export_runs"
    # Retention deletes by run.
    __table_args__ = (Index("ix_export_runs_run", "run_id"),)

    destination: Mapped[str] = mapped_column(String(255), primary_key=True)
    namespace: Mapped[str] = mapped_column(String(255), primary_key=True)
    run_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    # False: the run had spans of its own, so nothing was synthesized for it.
    synthesized: Mapped[bool] = mapped_column(Boolean, default=False)
    done_at: Mapped[datetime] = mapped_column(UTCDateTime())
