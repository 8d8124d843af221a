"""The call-tree page's view model: layout on the time axis, error paths, one node's
detail and the diagnosis of failed cross-namespace calls.

What a viewer may see is already decided by the store (``tracer.query._visibility``): the
trees and spans that reach this module are redacted.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from tracer.domain import ERROR_STATUSES, ErrorKind, NodeKind, Status, classify_error
from tracer.link import operation_token_json
from tracer.query import SpanInfo, TreeNode, failure_origins
from tracer.store import NodeDetail

from ._format import fmt_duration, fmt_percent

__all__ = [
    "Diagnosis",
    "Gap",
    "TreeView",
    "ViewNode",
    "build_view",
    "detail_view",
    "diagnose",
    "lane_gaps",
]

# Trees up to this size open fully; larger ones open two levels and every error path.
EXPAND_ALL_LIMIT = 300


@dataclass
class Check:
    """One line of a diagnosis: a question a person debugging a Nexus call asks, answered."""

    question: str
    answer: str
    verdict: str  # ok | problem | unknown | link (only a place to look)
    href: str | None = None


# A diagnosis's title and icon per kind of failure, in the words of the person on call.
KIND_TITLES: dict[ErrorKind, tuple[str, str]] = {
    ErrorKind.BUSINESS: ("Business failure", "⚑"),
    ErrorKind.TIMEOUT: ("Timeout", "◷"),
    ErrorKind.CANCELED: ("Canceled", "⊘"),
    ErrorKind.NOT_FOUND: ("Not found", "∅"),
    ErrorKind.UNAUTHORIZED: ("Unauthorized", "⊝"),
    ErrorKind.INFRASTRUCTURE: ("Infrastructure failure", "⚠"),
    ErrorKind.TERMINATED: ("Terminated", "■"),
    ErrorKind.OPERATION_ERROR: ("Handler failure", "✕"),
}


@dataclass
class Diagnosis:
    """What probably went wrong with a failed or timed-out cross-namespace call."""

    kind: ErrorKind
    summary: str
    checks: list[Check]
    live: dict[str, str] | None = None  # what to ask Temporal (namespace, task_queue, ...)
    waiting: bool = False  # a call still running: why it is not done yet

    @property
    def title(self) -> str:
        """The kind of failure, as a title."""
        return "Still waiting" if self.waiting else KIND_TITLES[self.kind][0]

    @property
    def icon(self) -> str:
        """The kind of failure, as one glyph."""
        return "⧗" if self.waiting else KIND_TITLES[self.kind][1]


@dataclass(frozen=True)
class Gap:
    """A stretch of a workflow's lane with no call of its own, and what it waited on."""

    left_pct: float  # within the workflow's bar
    width_pct: float
    label: str

    @property
    def style(self) -> str:
        """Where the gap lies on its bar, as one inline style."""
        return f"--gl:{fmt_percent(self.left_pct)};--gw:{fmt_percent(self.width_pct)}"


# Gaps shorter than this are not worth a label.
GAP_MIN = timedelta(seconds=1)


def lane_gaps(node: TreeNode, now: datetime) -> list[Gap]:
    """The stretches of more than a second in a workflow's lane that none of its calls
    covers, each labeled from its history: a timer, a signal or update it waited for."""
    if node.kind != NodeKind.WORKFLOW or node.start_time is None or not node.waits:
        return []
    start, end = node.start_time, node.end_time or now
    total = (end - start).total_seconds()
    if total <= 0:
        return []
    busy = sorted(
        (child.start_time, child.end_time or now)
        for child in node.children
        if child.start_time is not None and child.kind not in (NodeKind.SIGNAL, NodeKind.UPDATE)
    )
    idle: list[tuple[datetime, datetime]] = []
    cursor = start
    for begin, finish in busy:
        if begin - cursor > GAP_MIN:
            idle.append((cursor, begin))
        cursor = max(cursor, finish)
    if end - cursor > GAP_MIN:
        idle.append((cursor, end))
    gaps = []
    for begin, finish in idle:
        label = _gap_label(node, begin, finish, now)
        if label:
            left = (begin - start).total_seconds() / total * 100
            width = (finish - begin).total_seconds() / total * 100
            gaps.append(Gap(left, width, label))
    return gaps


def _gap_label(node: TreeNode, begin: datetime, finish: datetime, now: datetime) -> str | None:
    """What the history says a gap was spent on: the timer that covers most of it, else
    the signal or update whose arrival ended it."""
    overlap = {
        wait: (min(finish, wait.end_time or now) - max(begin, wait.start_time)).total_seconds()
        for wait in node.waits
        if wait.kind in ("timer", "retry")
    }
    best = max(overlap, key=lambda wait: overlap[wait], default=None)
    if best is not None and overlap[best] > 0:
        return f"timer {best.detail}" if best.kind == "timer" else f"retries: {best.detail}"
    for wait in node.waits:
        if wait.kind in ("signal", "update") and begin <= wait.start_time <= finish + GAP_MIN:
            return f"waiting for {wait.kind} {wait.detail}"
    return None


@dataclass
class ViewNode:
    """A tree node with everything the page renders for it."""

    id: str
    node: TreeNode
    depth: int
    left_pct: float
    width_pct: float
    offset_s: float | None
    duration_s: float | None
    is_error: bool
    is_origin: bool
    on_error_path: bool
    expanded: bool
    restricted: bool
    ui_url: str | None
    tree_url: str | None
    index: int = 0
    parent: ViewNode | None = field(default=None, repr=False)
    spans: list[SpanInfo] = field(default_factory=list)
    diagnosis: Diagnosis | None = None
    token: dict[str, Any] | None = None
    children: list[ViewNode] = field(default_factory=list)

    gaps: list[Gap] = field(default_factory=list)

    @property
    def waiting_badge(self) -> str | None:
        """Why a running call is not done yet, in two words: no worker, or retrying with
        its attempt."""
        pending = self.node.pending
        if not pending or self.node.status != Status.RUNNING:
            return None
        if pending.get("task_queue_pollers") == 0:
            return "no worker"
        attempt = int(pending.get("attempt") or 1)
        if attempt > 1:
            return f"retrying \u00d7{attempt}"
        if pending.get("state") == "blocked":
            return "blocked"
        return None

    @property
    def waiting_reason(self) -> str | None:
        """A running call's last failure, as its innermost cause says it."""
        if self.node.status != Status.RUNNING:
            return None
        chain = failure_chain((self.node.pending or {}).get("last_failure"))
        if not chain:
            return None
        return f"{chain[-1].get('type')}: {chain[-1].get('message')}"

    @property
    def bar_style(self) -> str:
        """Where the bar lies on the time axis, as the row's one inline style."""
        return f"--l:{fmt_percent(self.left_pct)};--w:{fmt_percent(self.width_pct)}"


@dataclass
class TreeView:
    """The whole page: nodes, the time axis and the errors to jump between."""

    root: ViewNode
    nodes: list[ViewNode]
    total_s: float
    ticks: list[tuple[float, str]]
    errors: list[ViewNode]
    namespaces: list[str]
    max_depth: int = 0

    def hue_class(self, namespace: str) -> str:
        """The class that gives a namespace its color on this page (``h0``, ``h1``...):
        one rule in the page's head instead of a style on every row."""
        return f"h{self.namespaces.index(namespace)}"


def _ticks(total: float) -> list[tuple[float, str]]:
    steps = [0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 30, 60, 300]
    step = next((s for s in steps if total / s <= 6), total / 5)
    ticks, value = [], 0.0
    while value <= total * 1.0001:
        ticks.append((100 * value / total, fmt_duration(value) if value else "0"))
        value += step
    return ticks


_FAILURE_SUMMARIES = {
    ErrorKind.BUSINESS: (
        "The handler answered no on purpose: a non-retryable application error raised by "
        "the handler or one of its activities. Nothing is broken; the caller has to handle "
        "this answer."
    ),
    ErrorKind.INFRASTRUCTURE: (
        "Something broke on the handler side: a worker crash, a panic, a server error, or a "
        "retryable error that ran out of attempts."
    ),
    ErrorKind.TERMINATED: "The handler was terminated: an operator or a reset ended it.",
}


def failure_chain(failure: dict[str, Any] | None) -> list[dict[str, Any]]:
    """A ``pending`` last failure and its causes, outermost first."""
    chain: list[dict[str, Any]] = []
    while isinstance(failure, dict) and len(chain) < 16:
        chain.append(failure)
        failure = failure.get("cause")
    return chain


def _waiting(
    node: TreeNode, endpoints: dict[str, tuple[str, str]], live: dict[str, str] | None
) -> Diagnosis | None:
    """What a running call waits on: pollers on the target task queue, its last attempt,
    and for a handler workflow, the pending calls it is stuck on."""
    pending = node.pending or {}
    handlers = [c for c in node.children if c.kind in (NodeKind.WORKFLOW, NodeKind.NEXUS_HANDLER)]
    stuck = [
        below
        for handler in handlers
        for below in handler.walk()[1:]
        if below.status == Status.RUNNING
        and failure_chain((below.pending or {}).get("last_failure"))
    ]
    if not pending and not stuck:
        return None
    checks: list[Check] = []
    target_ns, target_tq = endpoints.get(str(node.details.get("endpoint") or ""), ("", ""))
    pollers = pending.get("task_queue_pollers")
    if pollers is not None:
        live = None  # already asked when the pending state was read
        checks.append(
            Check(
                f"Does task queue {target_tq!r} in {target_ns!r} have pollers?",
                "no: no worker polls it, so nothing takes the operation"
                if pollers == 0
                else f"yes: {pollers} worker{'s' if pollers != 1 else ''}",
                "problem" if pollers == 0 else "ok",
            )
        )
    chain = failure_chain(pending.get("last_failure"))
    if chain:
        said = " ← ".join(f"{f.get('type')}: {f.get('message')}" for f in chain)
        checks.append(
            Check(
                f"Why did attempt {pending.get('attempt')} fail?",
                said,
                "problem",
            )
        )
    if pending.get("next_attempt_time"):
        checks.append(
            Check("When is the next attempt?", str(pending["next_attempt_time"]), "unknown")
        )
    for below in stuck:
        last = failure_chain((below.pending or {}).get("last_failure"))[-1]
        attempt = (below.pending or {}).get("attempt")
        checks.append(
            Check(
                "Is the handler workflow stuck?",
                f"yes: {below.kind.replace('_', ' ')} {below.name} in {below.namespace}, "
                f"attempt {attempt}: {last.get('type')}: {last.get('message')}",
                "problem",
            )
        )
    if live is not None:
        checks.append(
            Check(
                f"Does task queue {live['task_queue']!r} in {live['namespace']!r} have pollers?",
                "asking Temporal…",
                "unknown",
            )
        )
    state = str(pending.get("state") or "waiting").replace("_", " ")
    summary = f"The call is still running ({state})."
    if pollers == 0:
        summary = f"No worker polls {target_tq!r} in {target_ns!r}: the call waits for one."
    elif chain:
        summary = (
            f"The handler keeps failing; Temporal retries it (attempt {pending.get('attempt')})."
        )
    elif stuck:
        summary = "The handler workflow runs, but a call inside it keeps failing."
    return Diagnosis(ErrorKind.OPERATION_ERROR, summary, checks, live, waiting=True)


def _failure_origin(handler: TreeNode | None) -> TreeNode | None:
    """The deepest failed node under ``handler``, following the first failure each time."""
    origin = handler
    while origin is not None:
        failing = [c for c in origin.children if c.status in ERROR_STATUSES]
        if not failing:
            break
        origin = failing[0]
    return origin


def _history_check(href: str | None) -> Check:
    """Where to read on: the handler's history (a link, not a finding)."""
    return Check(
        "Handler history",
        "open the handler workflow's history in the Temporal Web UI"
        if href
        else "no Temporal Web UI URL configured (--temporal-ui-url)",
        "link" if href else "unknown",
        href,
    )


def diagnose(
    node: TreeNode,
    caller: TreeNode | None,
    endpoints: dict[str, tuple[str, str]],
    ui_link: Callable[[str, str, str], str | None],
) -> Diagnosis | None:
    """Automate the Nexus debugging checklist for a failed or timed-out call.

    Args:
        node: A ``nexus_operation`` or activity-wrapper ``activity`` node.
        caller: The workflow node that made the call.
        endpoints: Known Nexus endpoints: name to (target namespace, target task queue).
        ui_link: Builds a Temporal Web UI link (namespace, workflow id, run id).
    """
    if node.status == Status.RUNNING:
        endpoint = str(node.details.get("endpoint") or "")
        target = endpoints.get(endpoint)
        return _waiting(
            node, endpoints, {"namespace": target[0], "task_queue": target[1]} if target else None
        )
    recorded = node.details.get("error_kind")
    kind = classify_error(
        node.status, (node.error or {}).get("type"), str(recorded) if recorded else None
    )
    if kind is None:
        return None
    handlers = [c for c in node.children if c.kind in (NodeKind.WORKFLOW, NodeKind.NEXUS_HANDLER)]
    if node.kind == NodeKind.ACTIVITY and not handlers:
        return None  # a plain activity, not a cross-namespace call
    if node.kind not in (NodeKind.NEXUS_OPERATION, NodeKind.ACTIVITY):
        return None
    endpoint = str(node.details.get("endpoint") or "")
    target_ns, target_tq = endpoints.get(endpoint, ("", ""))
    handler = handlers[0] if handlers else None
    if handler is not None and not target_ns:
        target_ns = handler.namespace
    if handler is not None and handler.details.get("task_queue"):
        target_tq = str(handler.details["task_queue"])
    caller_ns = caller.namespace if caller else node.namespace
    checks: list[Check] = []
    live: dict[str, str] | None = None
    if target_ns and target_tq:
        live = {"namespace": target_ns, "task_queue": target_tq}
        if handler is not None and handler.workflow_id and handler.run_id:
            live.update(workflow_id=handler.workflow_id, run_id=handler.run_id)
    handler_link = None
    if handler is not None and handler.workflow_id and handler.run_id:
        handler_link = ui_link(handler.namespace, handler.workflow_id, handler.run_id)
    if kind == ErrorKind.NOT_FOUND:
        summary = "The endpoint or the operation does not exist where the call went."
        if node.kind == NodeKind.NEXUS_OPERATION:
            checks.append(
                Check(
                    f"Does endpoint {endpoint!r} exist?",
                    f"yes: it targets namespace {target_ns!r}, task queue {target_tq!r}"
                    if endpoint in endpoints
                    else "not among the endpoints the collector read from Temporal",
                    "ok" if endpoint in endpoints else "problem",
                )
            )
            checks.append(
                Check(
                    f"Is {node.details.get('service')}/{node.details.get('operation')} registered?",
                    f"the worker polling {target_tq or 'the target task queue'} in "
                    f"{target_ns or 'the target namespace'} must register this service "
                    "and operation",
                    "unknown",
                )
            )
    elif kind == ErrorKind.UNAUTHORIZED:
        summary = f"The handler refused the caller namespace {caller_ns!r}."
        checks.append(
            Check(
                f"Is {caller_ns!r} in the allowed caller namespaces of "
                f"{target_ns or 'the handler'}?",
                "the handler rejected it: add it to the handler's allowed list (the caller "
                "namespace comes from the server-written nexus-link header)",
                "problem",
            )
        )
    elif kind == ErrorKind.TIMEOUT:
        summary = "The caller gave up before the handler answered."
        if handler is None:
            checks.append(
                Check(
                    "Did the handler start?",
                    "no handler workflow is linked: the operation may never have been picked "
                    "up (no worker on the target task queue?)",
                    "problem",
                )
            )
        elif handler.status == Status.RUNNING:
            pending = [c.name for c in handler.children if c.status == Status.RUNNING]
            checks.append(
                Check(
                    "Is the handler workflow stuck?",
                    "still running"
                    + (f"; pending: {', '.join(pending)}" if pending else "; nothing pending"),
                    "problem",
                    handler_link,
                )
            )
        else:
            took = ""
            if handler.start_time and handler.end_time:
                seconds = (handler.end_time - handler.start_time).total_seconds()
                took = f" after {fmt_duration(seconds)}"
            checks.append(
                Check(
                    "Is the handler workflow stuck?",
                    f"no: it ended {handler.status}{took}; the caller's timeout is shorter "
                    "than the handler needs",
                    "problem",
                    handler_link,
                )
            )
    elif kind == ErrorKind.CANCELED:
        summary = "The call was canceled: someone asked for it, nothing broke."
        checks.append(_history_check(handler_link))
    else:
        summary = _FAILURE_SUMMARIES.get(kind, "The handler side failed; its history tells why.")
        origin = _failure_origin(handler)
        if origin is not None and origin.error:
            attempts = origin.details.get("attempt")
            tried = f" (attempt {attempts})" if isinstance(attempts, int) and attempts > 1 else ""
            checks.append(
                Check(
                    "Where did it fail?",
                    f"{origin.kind.replace('_', ' ')} {origin.name} in {origin.namespace}"
                    f"{tried}: {origin.error.get('type')}: {origin.error.get('message')}",
                    "problem",
                )
            )
        checks.append(_history_check(handler_link))
    if live is not None:
        checks.append(
            Check(
                f"Does task queue {target_tq!r} in {target_ns!r} have pollers?",
                "asking Temporal…",
                "unknown",
            )
        )
    return Diagnosis(kind, summary, checks, live)


def build_view(
    root: TreeNode,
    ui_link: Callable[[str, str, str], str | None],
    tree_link: Callable[[str, str, str], str],
    now: datetime | None = None,
) -> TreeView:
    """Lay the (already redacted) tree out for the page: rows, bars and error paths.

    Node details (spans, diagnosis, operation token) are not part of it: the page loads
    them on demand (:func:`detail_view`), so its size does not depend on them.
    """
    now = now or datetime.now(UTC)
    nodes = root.walk()
    t0 = min((n.start_time for n in nodes if n.start_time), default=now)
    t_end = max((n.end_time or now for n in nodes if n.start_time), default=now)
    total = max((t_end - t0).total_seconds(), 0.001)
    expand_all = len(nodes) <= EXPAND_ALL_LIMIT
    origins = {id(node) for node in failure_origins(root)}
    ordered: list[ViewNode] = []
    errors: list[ViewNode] = []

    def visit(node: TreeNode, parent: ViewNode | None, depth: int) -> ViewNode:
        start = node.start_time
        end = node.end_time or (now if start else None)
        offset = (start - t0).total_seconds() if start else None
        duration = (end - start).total_seconds() if start and end else None
        is_error = node.status in ERROR_STATUSES
        view = ViewNode(
            id=f"n{len(ordered)}",
            node=node,
            depth=depth,
            left_pct=100 * (offset or 0.0) / total,
            width_pct=max(100 * (duration or 0.0) / total, 0.15),
            offset_s=offset,
            duration_s=duration,
            is_error=is_error,
            is_origin=id(node) in origins,
            on_error_path=False,
            expanded=expand_all or depth < 2,
            restricted=bool(node.details.get("restricted")),
            ui_url=(
                ui_link(node.namespace, node.workflow_id, node.run_id)
                if node.workflow_id and node.run_id
                else None
            ),
            tree_url=(
                tree_link(node.namespace, node.workflow_id, node.run_id)
                if node.workflow_id and node.run_id and depth > 0
                else None
            ),
            index=len(ordered),
            parent=parent,
        )
        ordered.append(view)
        if view.is_origin:
            errors.append(view)
        view.children = [visit(child, view, depth + 1) for child in node.children]
        view.gaps = lane_gaps(node, now)
        view.on_error_path = any(c.is_error or c.on_error_path for c in view.children)
        if view.on_error_path:
            view.expanded = True
        return view

    root_view = visit(root, None, 0)
    namespaces = sorted({n.namespace for n in nodes})
    depth = max(view.depth for view in ordered)
    return TreeView(root_view, ordered, total, _ticks(total), errors, namespaces, depth)


def detail_view(
    detail: NodeDetail,
    index: int,
    ui_link: Callable[[str, str, str], str | None],
    tree_link: Callable[[str, str, str], str],
    now: datetime | None = None,
) -> ViewNode:
    """One node of the tree with everything its detail panel shows: spans, the decoded
    operation token and, for a failed cross-namespace call, a diagnosis."""
    view = build_view(detail.root, ui_link, tree_link, now).nodes[index]
    if view.restricted:
        return view
    view.spans = detail.spans
    token = view.node.details.get("operation_token")
    if token:
        view.token = operation_token_json(str(token))
    if view.node.kind in (NodeKind.NEXUS_OPERATION, NodeKind.ACTIVITY):
        endpoints = {e.name: (e.namespace, e.task_queue) for e in detail.endpoints}
        caller = view.parent.node if view.parent else None
        view.diagnosis = diagnose(view.node, caller, endpoints, ui_link)
    return view


def seconds_ago(seconds: float, now: datetime | None = None) -> datetime:
    """``now`` minus ``seconds``, in UTC."""
    return (now or datetime.now(UTC)) - timedelta(seconds=seconds)
