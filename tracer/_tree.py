"""Build the cross-namespace call tree (the JSON contract in DESIGN.md) from the store."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session

from ._models import STARTING_LINK_KINDS, Call, Link, NexusEndpointRow, Span, WorkflowRun

__all__ = ["TreeBuilder", "TreeNode", "build_tree", "find_run", "iso_time"]

# Handler spans of Nexus starts, as named by our interceptor and the SDK's own.
HANDLER_SPAN_PREFIX = "RunStartNexusOperationHandler:"

# Guards against pathological data (a cycle of links, a runaway fan-out).
MAX_DEPTH = 64


@dataclass
class TreeNode:
    """One node of the call tree; :meth:`to_json` gives the contract's shape."""

    kind: str
    namespace: str
    name: str
    status: str
    start_time: datetime | None
    end_time: datetime | None
    link: str
    verified: bool = True
    workflow_id: str | None = None
    run_id: str | None = None
    error: dict[str, str] | None = None
    details: dict[str, Any] = field(default_factory=dict)
    children: list[TreeNode] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """The node and its subtree as the JSON contract."""
        return {
            "kind": self.kind,
            "namespace": self.namespace,
            "name": self.name,
            "workflow_id": self.workflow_id,
            "run_id": self.run_id,
            "status": self.status,
            "start_time": iso_time(self.start_time),
            "end_time": iso_time(self.end_time),
            "error": self.error,
            "link": self.link,
            "verified": self.verified,
            "details": self.details,
            "children": [child.to_json() for child in self.children],
        }

    def walk(self) -> list[TreeNode]:
        """This node and every descendant, depth first."""
        nodes = [self]
        for child in self.children:
            nodes.extend(child.walk())
        return nodes


def iso_time(value: datetime | None) -> str | None:
    """The contract's time format: ISO 8601 UTC with milliseconds (``...T06:30:00.123Z``)."""
    if value is None:
        return None
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def _error(error_type: str | None, message: str | None) -> dict[str, str] | None:
    if error_type is None and message is None:
        return None
    return {"type": error_type or "Error", "message": message or ""}


def find_run(
    session: Session, namespace: str, workflow_id: str, run_id: str | None = None
) -> WorkflowRun | None:
    """The given run, or the latest run of a workflow id."""
    query = select(WorkflowRun).where(
        WorkflowRun.namespace == namespace, WorkflowRun.workflow_id == workflow_id
    )
    if run_id:
        query = query.where(WorkflowRun.run_id == run_id)
    return session.scalars(query.order_by(WorkflowRun.start_time.desc()).limit(1)).first()


def _run_by_id(session: Session, namespace: str, run_id: str) -> WorkflowRun | None:
    return session.scalars(
        select(WorkflowRun).where(WorkflowRun.namespace == namespace, WorkflowRun.run_id == run_id)
    ).first()


def _links_to(session: Session, run: WorkflowRun) -> list[Link]:
    """Links whose handler end is ``run`` (by run id, or by workflow id for token links)."""
    return list(
        session.scalars(
            select(Link).where(
                Link.handler_namespace == run.namespace,
                Link.kind.in_(STARTING_LINK_KINDS),
                or_(
                    Link.handler_run_id == run.run_id,
                    and_(Link.handler_run_id == "", Link.handler_workflow_id == run.workflow_id),
                ),
            )
        )
    )


def _caller_of(session: Session, run: WorkflowRun) -> WorkflowRun | None:
    for link in _links_to(session, run):
        caller = _run_by_id(session, link.caller_namespace, link.caller_run_id)
        if caller is not None:
            return caller
    if run.parent_run_id and run.parent_namespace:
        return _run_by_id(session, run.parent_namespace, run.parent_run_id)
    return None


def _topmost(session: Session, run: WorkflowRun) -> WorkflowRun:
    seen = {run.id}
    while (caller := _caller_of(session, run)) is not None and caller.id not in seen:
        seen.add(caller.id)
        run = caller
    return run


class TreeBuilder:
    """Builds a tree level by level: a handful of queries per depth, not per node."""

    def __init__(self, session: Session) -> None:
        self.session = session
        rows = session.execute(select(NexusEndpointRow.name, NexusEndpointRow.target_namespace))
        self.endpoints: dict[str, str] = {name: namespace for name, namespace in rows}
        self.placed: set[int] = set()

    def build(self, root: WorkflowRun) -> TreeNode:
        root_node = self.run_node(root, "root", True)
        level = [(root, root_node)]
        for _depth in range(MAX_DEPTH):
            if not level:
                break
            level = self.expand(level)
        return root_node

    def expand(
        self, level: list[tuple[WorkflowRun, TreeNode]]
    ) -> list[tuple[WorkflowRun, TreeNode]]:
        """Attach the calls of every run in ``level``; return the handler runs found below."""
        runs = [run for run, _ in level]
        calls: dict[int, list[Call]] = defaultdict(list)
        for call in self.session.scalars(
            select(Call).where(Call.run_pk.in_([run.id for run in runs])).order_by(Call.event_id)
        ):
            calls[call.run_pk].append(call)
        links: dict[tuple[str, str], list[Link]] = defaultdict(list)
        for link in self.session.scalars(
            select(Link).where(Link.caller_run_id.in_({run.run_id for run in runs}))
        ):
            links[(link.caller_namespace, link.caller_run_id)].append(link)
        handlers = self._handler_runs([link for group in links.values() for link in group])
        handler_spans = self._handler_spans(
            [call for group in calls.values() for call in group if _is_sync_done(call)]
        )
        next_level: list[tuple[WorkflowRun, TreeNode]] = []
        for run, node in level:
            run_links = links.get((run.namespace, run.run_id), [])
            for call in calls.get(run.id, []):
                call_node = self.call_node(run, call)
                node.children.append(call_node)
                found: dict[int, tuple[WorkflowRun, Link, bool]] = {}
                messages: dict[tuple[Any, ...], TreeNode] = {}
                for link in run_links:
                    if link.kind not in STARTING_LINK_KINDS and _link_matches(link, call):
                        message = self.message_node(link, handlers)
                        key = (message.kind, message.run_id, message.name, message.start_time)
                        messages.setdefault(key, message)
                        continue
                    handler = _pick_handler(handlers, link, call)
                    if (
                        handler is None
                        or handler.id in self.placed
                        or not _link_matches(link, call)
                    ):
                        continue
                    known = found.get(handler.id)
                    found[handler.id] = (
                        handler,
                        link,
                        link.verified or (known is not None and known[2]),
                    )
                for handler, link, verified in sorted(
                    found.values(), key=lambda h: h[0].start_time
                ):
                    child = self.run_node(handler, link.kind, verified)
                    call_node.children.append(child)
                    next_level.append((handler, child))
                call_node.children.extend(sorted(messages.values(), key=_started))
                if _is_sync_done(call) and not found:
                    span = handler_spans.get(call.request_id or "")
                    call_node.children.append(self._sync_handler_node(call, span))
        return next_level

    def _handler_runs(self, links: list[Link]) -> dict[tuple[str, str], list[WorkflowRun]]:
        """Runs at the handler end of ``links``, keyed by (namespace, run id), and by
        (namespace, workflow id) for operation-token links that name no run."""
        by_run = {link.handler_run_id for link in links if link.handler_run_id}
        by_workflow = {link.handler_workflow_id for link in links if not link.handler_run_id}
        found: dict[tuple[str, str], list[WorkflowRun]] = defaultdict(list)
        if by_run:
            for run in self.session.scalars(
                select(WorkflowRun).where(WorkflowRun.run_id.in_(by_run))
            ):
                found[(run.namespace, run.run_id)].append(run)
        if by_workflow:
            for run in self.session.scalars(
                select(WorkflowRun)
                .where(WorkflowRun.workflow_id.in_(by_workflow))
                .order_by(WorkflowRun.start_time)
            ):
                found[(run.namespace, "wid:" + run.workflow_id)].append(run)
        return found

    def run_node(self, run: WorkflowRun, link: str, verified: bool) -> TreeNode:
        self.placed.add(run.id)
        return TreeNode(
            kind="workflow",
            namespace=run.namespace,
            name=run.workflow_type,
            workflow_id=run.workflow_id,
            run_id=run.run_id,
            status=run.status,
            start_time=run.start_time,
            end_time=run.close_time,
            error=_error(run.error_type, run.error_message),
            link=link,
            verified=verified,
            details={"task_queue": run.task_queue, "history_length": run.history_length},
        )

    def call_node(self, run: WorkflowRun, call: Call) -> TreeNode:
        details: dict[str, Any] = {"event_id": call.event_id, "attempt": call.attempt}
        for attr in ("activity_id", "endpoint", "service", "operation", "request_id"):
            if (value := getattr(call, attr)) is not None:
                details[attr] = value
        if call.operation_token:
            details["operation_token"] = call.operation_token
        return TreeNode(
            kind=call.kind,
            namespace=run.namespace,
            name=call.name,
            status=call.status,
            start_time=call.start_time,
            end_time=call.end_time,
            error=_error(call.error_type, call.error_message),
            link="call",
            details=details,
        )

    def message_node(
        self, link: Link, handlers: dict[tuple[str, str], list[WorkflowRun]]
    ) -> TreeNode:
        """A signal or update a call sent to a workflow that lives in its own tree."""
        targets = handlers.get((link.handler_namespace, link.handler_run_id), [])
        target = targets[0] if targets else None
        return TreeNode(
            kind=link.kind,
            namespace=link.handler_namespace,
            name=link.detail or link.kind,
            workflow_id=link.handler_workflow_id,
            run_id=link.handler_run_id,
            status="completed",
            start_time=link.event_time,
            end_time=link.event_time,
            link="activity_wrapper" if link.caller_activity_id else "call",
            verified=link.verified,
            details={"workflow_type": target.workflow_type if target else None},
        )

    def _handler_spans(self, calls: list[Call]) -> dict[str, Span]:
        """Handler-side spans of sync operations, by the request id they share with the call."""
        request_ids = {call.request_id for call in calls if call.request_id}
        if not request_ids:
            return {}
        spans = self.session.scalars(
            select(Span).where(
                Span.request_id.in_(request_ids),
                Span.name.startswith(HANDLER_SPAN_PREFIX),
            )
        )
        return {span.request_id: span for span in spans if span.request_id}

    def _sync_handler_node(self, call: Call, span: Span | None) -> TreeNode:
        """The handler side of a sync operation: no history, so the call's outcome, with the
        handler's own span (joined by request id) for its namespace and timing when we have it.
        """
        node = TreeNode(
            kind="nexus_handler",
            namespace=self.endpoints.get(call.endpoint or "", "unknown"),
            name=f"{call.service}/{call.operation}",
            status=call.status,
            start_time=call.start_time,
            end_time=call.end_time,
            error=_error(call.error_type, call.error_message),
            link="nexus",
            details={"request_id": call.request_id, "endpoint": call.endpoint},
        )
        if span is not None:
            node.namespace = span.namespace or node.namespace
            node.start_time = _from_nanos(span.start_time_unix_nano)
            node.end_time = _from_nanos(span.end_time_unix_nano)
            node.details.update(trace_id=span.trace_id, span_id=span.span_id)
        return node


def _started(node: TreeNode) -> datetime:
    return node.start_time or datetime.min.replace(tzinfo=UTC)


def _is_sync_done(call: Call) -> bool:
    """A Nexus call that ended without an operation token: the handler answered inline."""
    return call.kind == "nexus_operation" and not call.operation_token and call.status != "running"


def _from_nanos(nanos: int) -> datetime:
    return datetime.fromtimestamp(nanos / 1e9, tz=UTC)


def _pick_handler(
    handlers: dict[tuple[str, str], list[WorkflowRun]], link: Link, call: Call
) -> WorkflowRun | None:
    if link.handler_run_id:
        runs = handlers.get((link.handler_namespace, link.handler_run_id), [])
        return runs[0] if runs else None
    # Operation-token links name only the workflow: take its first run after the call.
    for run in handlers.get((link.handler_namespace, "wid:" + link.handler_workflow_id), []):
        if run.start_time >= call.start_time:
            return run
    return None


def _link_matches(link: Link, call: Call) -> bool:
    if link.caller_event_id and link.caller_event_id == call.event_id:
        return True
    if link.caller_request_id and link.caller_request_id == call.request_id:
        return True
    return bool(link.caller_activity_id and link.caller_activity_id == call.activity_id)


def build_tree(
    session: Session, namespace: str, workflow_id: str, run_id: str | None = None
) -> TreeNode | None:
    """The whole tree that contains the given workflow, rooted at its topmost caller.

    Returns ``None`` when the store has no such workflow.
    """
    run = find_run(session, namespace, workflow_id, run_id)
    if run is None:
        return None
    return TreeBuilder(session).build(_topmost(session, run))
