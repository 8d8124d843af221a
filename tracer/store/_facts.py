"""What the linker reads from one history: the run, its calls, its links (the store's input)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

from tracer.domain import LinkKind, LinkSource, NodeKind, Status

__all__ = ["CallFacts", "LinkFacts", "RunFacts", "WaitFacts"]


@dataclass
class CallFacts:
    """A call as the caller's history shows it, keyed by its scheduling event id."""

    event_id: int
    kind: NodeKind
    name: str
    start_time: datetime
    status: Status = Status.RUNNING
    end_time: datetime | None = None
    error_type: str | None = None
    error_message: str | None = None
    # What kind of failure it was, read from the whole failure (tracer.domain.ErrorKind).
    error_kind: str | None = None
    attempt: int = 1
    activity_id: str | None = None
    endpoint: str | None = None
    service: str | None = None
    operation: str | None = None
    request_id: str | None = None
    operation_token: str | None = None
    traceparent: str | None = None


@dataclass(frozen=True)
class LinkFacts:
    """One caller-to-handler edge and the source that recorded it."""

    kind: LinkKind
    source: LinkSource
    caller_namespace: str
    caller_workflow_id: str
    caller_run_id: str
    handler_namespace: str
    handler_workflow_id: str
    handler_run_id: str
    caller_event_id: int = 0
    caller_request_id: str = ""
    caller_activity_id: str = ""
    verified: bool = True
    # Signal and update edges: the signal or update name, the target's event that recorded
    # it (0 for edges that start the target), and when the target got it.
    detail: str = ""
    target_event_id: int = 0
    event_time: datetime | None = None


@dataclass
class WaitFacts:
    """Something a run waited on that is no call of its own, as its history shows it: a
    timer, an activity's retries, a signal or update it received. The tree page labels
    the gaps in a workflow's lane with these."""

    event_id: int
    kind: str  # timer | retry | signal | update
    start_time: datetime
    end_time: datetime | None = None
    detail: str = ""


@dataclass
class RunFacts:
    """Everything one history says about its run."""

    namespace: str
    workflow_id: str
    run_id: str
    workflow_type: str = ""
    task_queue: str = ""
    status: Status = Status.RUNNING
    start_time: datetime = field(default_factory=lambda: datetime.now(UTC))
    close_time: datetime | None = None
    error_type: str | None = None
    error_message: str | None = None
    error_kind: str | None = None
    parent_namespace: str | None = None
    parent_workflow_id: str | None = None
    parent_run_id: str | None = None
    parent_event_id: int | None = None
    history_length: int = 0
    calls: list[CallFacts] = field(default_factory=list)
    links: list[LinkFacts] = field(default_factory=list)
    # A standalone Nexus operation is stored as a run of this kind, with one call (event
    # id 0) holding what a caller's call would: endpoint, request id, outcome...
    kind: NodeKind = NodeKind.WORKFLOW
    waits: list[WaitFacts] = field(default_factory=list)
