"""Build the cross-namespace call tree (the JSON contract in DESIGN.md) from the store."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session

from ._models import Call, Link, NexusEndpointRow, WorkflowRun

__all__ = ["TreeNode", "build_tree", "find_run"]

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
            "start_time": _iso(self.start_time),
            "end_time": _iso(self.end_time),
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


def _iso(value: datetime | None) -> str | None:
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


class _Builder:
    def __init__(self, session: Session) -> None:
        self.session = session
        rows = session.execute(select(NexusEndpointRow.name, NexusEndpointRow.target_namespace))
        self.endpoints: dict[str, str] = {name: namespace for name, namespace in rows}
        self.placed: set[int] = set()

    def run_node(self, run: WorkflowRun, link: str, verified: bool, depth: int) -> TreeNode:
        self.placed.add(run.id)
        node = TreeNode(
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
        if depth >= MAX_DEPTH:
            return node
        calls = self.session.scalars(
            select(Call).where(Call.run_pk == run.id).order_by(Call.event_id)
        ).all()
        links = self.session.scalars(
            select(Link).where(
                Link.caller_namespace == run.namespace, Link.caller_run_id == run.run_id
            )
        ).all()
        node.children = [self.call_node(run, call, links, depth) for call in calls]
        return node

    def call_node(
        self, run: WorkflowRun, call: Call, links: list[Link] | Any, depth: int
    ) -> TreeNode:
        details: dict[str, Any] = {"event_id": call.event_id, "attempt": call.attempt}
        for attr in ("activity_id", "endpoint", "service", "operation", "request_id"):
            if (value := getattr(call, attr)) is not None:
                details[attr] = value
        if call.operation_token:
            details["operation_token"] = call.operation_token
        node = TreeNode(
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
        handlers: dict[tuple[str, str], tuple[WorkflowRun, Link, bool]] = {}
        for link in links:
            if not _link_matches(link, call):
                continue
            handler = self._resolve_handler(link, call)
            if handler is None or handler.id in self.placed:
                continue
            key = (handler.namespace, handler.run_id)
            known = handlers.get(key)
            verified = link.verified or (known is not None and known[2])
            handlers[key] = (handler, link, verified)
        for handler, link, verified in sorted(handlers.values(), key=lambda h: h[0].start_time):
            node.children.append(self.run_node(handler, link.kind, verified, depth + 1))
        sync_done = not call.operation_token and call.status != "running"
        if call.kind == "nexus_operation" and sync_done and not handlers:
            node.children.append(self._sync_handler_node(call))
        return node

    def _resolve_handler(self, link: Link, call: Call) -> WorkflowRun | None:
        if link.handler_run_id:
            return _run_by_id(self.session, link.handler_namespace, link.handler_run_id)
        # Operation-token links name only the workflow: take its first run after the call.
        return self.session.scalars(
            select(WorkflowRun)
            .where(
                WorkflowRun.namespace == link.handler_namespace,
                WorkflowRun.workflow_id == link.handler_workflow_id,
                WorkflowRun.start_time >= call.start_time,
            )
            .order_by(WorkflowRun.start_time)
            .limit(1)
        ).first()

    def _sync_handler_node(self, call: Call) -> TreeNode:
        """The handler side of a sync operation: it has no history, only the call's outcome."""
        return TreeNode(
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
    return _Builder(session).run_node(_topmost(session, run), "root", True, 0)
