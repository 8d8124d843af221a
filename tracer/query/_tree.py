"""Build the cross-namespace call tree (the JSON contract in README.md) from the store.

Which run hangs under which call is :mod:`tracer.query._graph`'s decision; this module
turns runs, calls and links into :class:`TreeNode` objects.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from interceptors import SpanName
from tracer.db import Call, Link, NexusEndpointRow, PendingState, RunWait, Span, WorkflowRun
from tracer.domain import STARTING_LINKS, NodeKind, Placement, Status

from ._graph import MAX_DEPTH, Caller, CallGraph, chunks, link_matches_call, precedence
from ._settle import Outcome, settle

__all__ = ["TreeBuilder", "TreeNode", "Wait", "build_tree", "iso_time"]


@dataclass(frozen=True)
class Wait:
    """A timer, an activity's retries, or a signal or update a run received."""

    kind: str  # timer | retry | signal | update
    start_time: datetime
    end_time: datetime | None
    detail: str


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
    # What Temporal last said of a running call (state, attempt, last failure...).
    pending: dict[str, Any] | None = None
    # A workflow's timers, activity retries, signals and updates received (for the page:
    # what a gap in its lane was spent on); not part of the JSON contract.
    waits: list[Wait] = field(default_factory=list)

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
            "pending": self.pending,
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


class TreeBuilder:
    """Builds a tree level by level: a handful of queries per depth, not per node."""

    def __init__(self, session: Session, graph: CallGraph | None = None) -> None:
        self.session = session
        self.graph = graph or CallGraph(session)
        rows = session.execute(select(NexusEndpointRow.name, NexusEndpointRow.target_namespace))
        self.endpoints: dict[str, str] = {name: namespace for name, namespace in rows}
        self.placed: set[int] = set()
        # Run primary key -> primary key of the root of the tree it was placed in.
        self.tree_of: dict[int, int] = {}

    def build(self, root: WorkflowRun) -> TreeNode:
        """The tree below ``root`` (which should be a root: see :meth:`CallGraph.root_of`)."""
        return self.build_many([root])[0]

    def build_many(self, roots: Sequence[WorkflowRun]) -> list[TreeNode]:
        """The trees below several roots, built together: the queries of one level serve
        every tree. :attr:`tree_of` then maps each placed run to its root."""
        level = []
        for root in roots:
            self.tree_of[root.id] = root.id
            level.append((root, self.run_node(root, Placement.ROOT, True)))
        nodes = [node for _, node in level]
        for _depth in range(MAX_DEPTH):
            if not level:
                break
            level = self.expand(level)
        return nodes

    def expand(
        self, level: list[tuple[WorkflowRun, TreeNode]]
    ) -> list[tuple[WorkflowRun, TreeNode]]:
        """Attach the calls of every run in ``level``; return the handler runs found below."""
        runs = [run for run, _ in level]
        calls: dict[int, list[Call]] = defaultdict(list)
        for chunk in chunks([run.id for run in runs]):
            for call in self.session.scalars(
                select(Call).where(Call.run_pk.in_(chunk)).order_by(Call.event_id)
            ):
                calls[call.run_pk].append(call)
        pending = self._pending([run for run in runs if run.status == Status.RUNNING])
        waits = self._waits(runs)
        outgoing = self.graph.outgoing(runs)
        messages = [
            link for links in outgoing.values() for link in links if link.kind not in STARTING_LINKS
        ]
        targets = self.graph.handlers(messages)
        children = self.graph.children(runs)
        handler_spans = self._handler_spans(
            [call for group in calls.values() for call in group if _may_be_sync(call)]
        )
        next_level: list[tuple[WorkflowRun, TreeNode]] = []
        # Per run: its calls with their nodes, and the handler nodes placed under each call.
        laid_out: list[tuple[WorkflowRun, list[tuple[Call, TreeNode]], dict[int, list[TreeNode]]]]
        laid_out = []
        unsettled: list[_Unsettled] = []
        for run, node in level:
            node.waits = waits.get(run.id, [])
            run_calls = calls.get(run.id, [])
            if run.kind == NodeKind.NEXUS_OPERATION:
                # A standalone operation is its own call: its handler hangs under it.
                call_nodes = [(call, node) for call in run_calls[:1]]
                for call, _ in call_nodes:
                    node.details.update(self.call_node(run, call).details)
            else:
                call_nodes = [(call, self.call_node(run, call)) for call in run_calls]
                node.children.extend(call_node for _, call_node in call_nodes)
            for call, call_node in call_nodes:
                if call_node.status == Status.RUNNING:
                    _attach_pending(call, call_node, pending.get(run.id, {}))
            placed_under: dict[int, list[tuple[WorkflowRun, Caller]]] = defaultdict(list)
            for handler, caller in children.get(run.id, []):
                if handler.id in self.placed:
                    continue
                self.placed.add(handler.id)
                self.tree_of[handler.id] = self.tree_of[run.id]
                index = next(
                    (i for i, (call, _) in enumerate(call_nodes) if _made_by(caller, call)), -1
                )
                placed_under[index].append((handler, caller))
            handler_nodes: dict[int, list[TreeNode]] = defaultdict(list)
            for index, found in placed_under.items():
                # A handler whose call the caller's history does not show hangs off the run.
                parent = call_nodes[index][1] if index >= 0 else node
                for handler, caller in sorted(found, key=lambda h: h[0].start_time):
                    child = self.run_node(handler, Placement(caller.kind), caller.verified)
                    parent.children.append(child)
                    next_level.append((handler, child))
                    handler_nodes[index].append(child)
            laid_out.append((run, call_nodes, handler_nodes))
            if run.status == Status.RUNNING:
                continue
            run_links = outgoing.get((run.namespace, run.run_id), [])
            for index, (call, call_node) in enumerate(call_nodes):
                if call_node.status != Status.RUNNING:
                    continue
                handled = call.kind in _HANDLED_BY_RUNS
                unsettled.append(
                    _Unsettled(
                        call_node,
                        node,
                        [handler for handler, _ in placed_under.get(index, [])] if handled else [],
                        [
                            link
                            for link in run_links
                            if handled
                            and link.kind in STARTING_LINKS
                            and link_matches_call(link, call)
                        ],
                    )
                )
        self._settle(unsettled)
        for run, call_nodes, handler_nodes in laid_out:
            # Worst record first: when two name one message (a handler's header claim and
            # the server's link often do), the best one comes last and stays.
            run_messages = sorted(
                (
                    link
                    for link in outgoing.get((run.namespace, run.run_id), [])
                    if link.kind not in STARTING_LINKS
                ),
                key=lambda link: -precedence(link.source, link.verified),
            )
            for index, (call, call_node) in enumerate(call_nodes):
                sent = {
                    (m.kind, m.run_id, m.name, m.start_time): m
                    for link in run_messages
                    if link_matches_call(link, call)
                    for m in [self.message_node(link, targets)]
                }
                ordered = sorted(sent.values(), key=_started)
                if call.kind != NodeKind.NEXUS_OPERATION:
                    call_node.children.extend(ordered)
                    continue
                handlers = handler_nodes.get(index, [])
                if not handlers and _may_be_sync(call):
                    span = handler_spans.get(call.request_id or "")
                    answered = call_node.status not in (Status.RUNNING, Status.ABANDONED)
                    # A handler shows when something proves it ran: an answer, its span,
                    # or what it sent.
                    if answered or span is not None or ordered:
                        handlers = [self._sync_handler_node(call, call_node, span)]
                        call_node.children.extend(handlers)
                # What a Nexus call "sent" its handler sent: it hangs under the handler.
                (handlers[0] if handlers else call_node).children.extend(ordered)
        return next_level

    def _settle(self, unsettled: Sequence[_Unsettled]) -> None:
        """Apply :func:`settle` to calls their closed callers left running, with the
        handler runs placed under them and those their starting links name (a handler
        two callers share hangs under one of them only)."""
        if not unsettled:
            return
        resolved = self.graph.resolve(link for item in unsettled for link in item.links)
        for item in unsettled:
            handlers = {run.id: run for run in item.placed}
            for link in item.links:
                if (run := resolved.get(link.id)) is not None:
                    handlers[run.id] = run
            settle(item.call, item.caller, [_outcome(run) for run in handlers.values()])

    def run_node(self, run: WorkflowRun, link: Placement, verified: bool) -> TreeNode:
        """The node of a workflow run."""
        self.placed.add(run.id)
        if run.kind == NodeKind.NEXUS_OPERATION:
            return self._operation_node(run, link, verified)
        node = TreeNode(
            NodeKind.WORKFLOW,
            run.namespace,
            run.workflow_type,
            run.status,
            run.start_time,
            run.close_time,
            link,
            verified,
            workflow_id=run.workflow_id,
            run_id=run.run_id,
        )
        node.error = _error(run.error_type, run.error_message)
        node.details = {"task_queue": run.task_queue, "history_length": run.history_length}
        if run.error_kind:
            node.details["error_kind"] = run.error_kind
        return node

    def _operation_node(self, run: WorkflowRun, link: Placement, verified: bool) -> TreeNode:
        """The node of a standalone Nexus operation (details from its call: see expand)."""
        return TreeNode(
            NodeKind.NEXUS_OPERATION,
            run.namespace,
            run.workflow_type,
            run.status,
            run.start_time,
            run.close_time,
            link,
            verified,
            error=_error(run.error_type, run.error_message),
            details={"operation_id": run.workflow_id, "operation_run_id": run.run_id},
        )

    def call_node(self, run: WorkflowRun, call: Call) -> TreeNode:
        """The node of a call a run made."""
        details: dict[str, Any] = {"event_id": call.event_id, "attempt": call.attempt}
        for attr in ("activity_id", "endpoint", "service", "operation", "request_id"):
            if (value := getattr(call, attr)) is not None:
                details[attr] = value
        if call.operation_token:
            details["operation_token"] = call.operation_token
        if call.error_kind:
            details["error_kind"] = call.error_kind
        return TreeNode(
            kind=call.kind,
            namespace=run.namespace,
            name=call.name,
            status=call.status,
            start_time=call.start_time,
            end_time=call.end_time,
            error=_error(call.error_type, call.error_message),
            link=Placement.CALL,
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
            status=Status.COMPLETED,
            start_time=link.event_time,
            end_time=link.event_time,
            link=Placement.ACTIVITY_WRAPPER if link.caller_activity_id else Placement.CALL,
            verified=link.verified,
            details={"workflow_type": target.workflow_type if target else None},
        )

    def _pending(self, runs: Sequence[WorkflowRun]) -> dict[int, dict[str, Any]]:
        """The stored pending state of open runs' calls, by run primary key."""
        found: dict[int, dict[str, Any]] = {}
        for chunk in chunks([run.id for run in runs]):
            for row in self.session.scalars(
                select(PendingState).where(PendingState.run_pk.in_(chunk))
            ):
                found[row.run_pk] = json.loads(row.calls)
        return found

    def _waits(self, runs: Sequence[WorkflowRun]) -> dict[int, list[Wait]]:
        """The waits of ``runs``, by run primary key, in time order."""
        found: dict[int, list[Wait]] = defaultdict(list)
        for chunk in chunks([run.id for run in runs]):
            for wait in self.session.scalars(
                select(RunWait).where(RunWait.run_pk.in_(chunk)).order_by(RunWait.start_time)
            ):
                found[wait.run_pk].append(
                    Wait(wait.kind, wait.start_time, wait.end_time, wait.detail)
                )
        return found

    def _handler_spans(self, calls: list[Call]) -> dict[str, Span]:
        """Handler-side spans of sync operations, by the request id they share with the call."""
        request_ids = sorted({call.request_id for call in calls if call.request_id})
        found: dict[str, Span] = {}
        for chunk in chunks(request_ids):
            for span in self.session.scalars(
                select(Span).where(
                    Span.request_id.in_(chunk),
                    Span.name.startswith(SpanName.RUN_START_NEXUS_OPERATION_HANDLER),
                )
            ):
                if span.request_id:
                    found[span.request_id] = span
        return found

    def _sync_handler_node(self, call: Call, call_node: TreeNode, span: Span | None) -> TreeNode:
        """The handler side of a sync operation: no history, so the call's outcome (as
        settled), with the handler's own span (joined by request id) for its namespace and
        timing when we have it.
        """
        node = TreeNode(
            kind=NodeKind.NEXUS_HANDLER,
            namespace=self.endpoints.get(call.endpoint or "", "unknown"),
            name=f"{call.service}/{call.operation}",
            status=call_node.status,
            start_time=call.start_time,
            end_time=call_node.end_time,
            error=call_node.error,
            link=Placement.NEXUS,
            details={"request_id": call.request_id, "endpoint": call.endpoint},
        )
        if span is not None:
            node.namespace = span.namespace or node.namespace
            node.start_time = _from_nanos(span.start_time_unix_nano)
            node.end_time = _from_nanos(span.end_time_unix_nano)
            node.details.update(trace_id=span.trace_id, span_id=span.span_id)
        return node


def _attach_pending(call: Call, node: TreeNode, pending: dict[str, Any]) -> None:
    """Give a running call what Temporal last said of it; its attempt is the latest."""
    if call.kind == NodeKind.NEXUS_OPERATION:
        state = pending.get(f"nexus:{call.event_id}")
    elif call.kind == NodeKind.ACTIVITY and call.activity_id:
        state = pending.get(f"activity:{call.activity_id}")
    else:
        return
    if state is not None:
        node.pending = state
        node.details["attempt"] = max(call.attempt, int(state.get("attempt") or 1))


def _made_by(caller: Caller, call: Call) -> bool:
    """Whether the caller record names ``call`` (a parent named at start: by event id)."""
    if caller.link is not None:
        return link_matches_call(caller.link, call)
    return bool(caller.event_id) and caller.event_id == call.event_id


def _started(node: TreeNode) -> datetime:
    return node.start_time or datetime.min.replace(tzinfo=UTC)


def _may_be_sync(call: Call) -> bool:
    """A Nexus call without an operation token: its handler answers inline, if at all."""
    return call.kind == NodeKind.NEXUS_OPERATION and not call.operation_token


# Calls whose handler is a run of its own, whose final state settles them.
_HANDLED_BY_RUNS = (NodeKind.NEXUS_OPERATION, NodeKind.CHILD_WORKFLOW)


@dataclass
class _Unsettled:
    """A call its closed caller left running, and the records of its handler runs."""

    call: TreeNode
    caller: TreeNode
    placed: list[WorkflowRun]
    links: list[Link]


def _outcome(run: WorkflowRun) -> Outcome:
    return Outcome(
        run.status, run.start_time, run.close_time, _error(run.error_type, run.error_message)
    )


def _from_nanos(nanos: int) -> datetime:
    return datetime.fromtimestamp(nanos / 1e9, tz=UTC)


def build_tree(
    session: Session,
    namespace: str,
    workflow_id: str,
    run_id: str | None = None,
    kind: str = NodeKind.WORKFLOW,
) -> TreeNode | None:
    """The whole tree that contains the given workflow (or standalone operation, with
    ``kind`` ``nexus_operation``), rooted at its topmost caller.

    Returns ``None`` when the store has no such workflow.
    """
    graph = CallGraph(session)
    run = graph.latest_run(namespace, workflow_id, run_id, kind)
    if run is None:
        return None
    return TreeBuilder(session, graph).build(graph.root_of(run))
