"""JSON API: health, linker status per namespace, the call-tree contract, search, the
namespace map and live diagnosis."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import JSONResponse
from sqlalchemy.exc import SQLAlchemyError

from tracer.domain import ExecutionStatus, NodeKind
from tracer.query import Scope, SpanInfo, TraceSummary, TreeNode, figures_of, iso_time

from ._access import viewer_of
from ._deps import refresh_open_runs, settings_of, store_of
from ._pages import templates, tree_href
from ._params import (
    MAX_ID_BYTES,
    MAX_NAMESPACE_BYTES,
    MAX_NODE_INDEX,
    MAX_RUN_ID_BYTES,
    bounded_int,
    bounded_text,
    echo,
    filter_from_query,
    optional_text,
    window_start,
)
from ._pending import refresh_operation_pending, refresh_pending
from ._view import ViewNode, detail_view

__all__ = ["api_router"]

api_router = APIRouter()
# How long a live diagnosis may wait for Temporal, in all.
DIAGNOSIS_TIMEOUT_S = 5.0


@api_router.get("/healthz", tags=["health"])
def healthz() -> dict[str, str]:
    """200 once the API is up."""
    return {"status": "ok"}


@api_router.get("/readyz", tags=["health"])
def readyz(request: Request) -> JSONResponse:
    """200 when the collector can do its job; 503 naming the failing checks otherwise:
    ``store`` (a write cannot be committed), ``database_file`` (the SQLite file written
    to is not the one at its path, so a restart would lose what is written now) or
    ``temporal`` (no linked namespace was reached lately). ``/api/namespaces`` says why.
    """
    readiness = store_of(request).readiness()
    if readiness.ready:
        return JSONResponse({"status": "ready"})
    # Public route: names the checks, not the paths and errors behind them.
    return JSONResponse({"status": "not ready", "failing": readiness.failing}, status_code=503)


@api_router.get("/api/namespaces", tags=["linker"])
def namespaces(request: Request) -> JSONResponse:
    """The linker's state in each configured namespace, which collector links it, and the
    collector's readiness (each check ``"ok"`` or its problem); 503 when the store cannot
    be read at all."""
    store = store_of(request)
    readiness = store.readiness()
    try:
        owners = store.lease_owners()
        states = store.linker_status(scope=viewer_of(request).namespaces)
    except SQLAlchemyError:
        return JSONResponse({"readiness": readiness.to_json(), "namespaces": []}, 503)
    return JSONResponse(
        {
            "readiness": readiness.to_json(),
            "namespaces": [
                {
                    "namespace": state.namespace,
                    "status": state.status,
                    "last_error": state.last_error,
                    "last_poll_at": state.last_poll_at.isoformat() if state.last_poll_at else None,
                    "close_cursor": state.close_cursor.isoformat() if state.close_cursor else None,
                    "start_cursor": state.start_cursor.isoformat() if state.start_cursor else None,
                    "runs_linked": state.runs_linked,
                    "linked_by": owners.get(state.namespace),
                }
                for state in states
            ],
        }
    )


def _tree_params(
    namespace: str, workflow_id: str, run_id: str | None
) -> tuple[str, str, str | None]:
    return (
        bounded_text(namespace, "namespace", MAX_NAMESPACE_BYTES),
        bounded_text(workflow_id, "workflow_id", MAX_ID_BYTES),
        optional_text(run_id, "run_id", MAX_RUN_ID_BYTES),
    )


def _missing(namespace: str, entry_id: str, kind: NodeKind) -> HTTPException:
    what = "standalone operation" if kind == NodeKind.NEXUS_OPERATION else "workflow"
    return HTTPException(
        status_code=404, detail=f"no {what} {echo(entry_id)} in namespace {echo(namespace)}"
    )


@api_router.get(
    "/api/workflows/{namespace}/{workflow_id:path}/tree",
    tags=["trees"],
    dependencies=[Depends(refresh_pending)],
    response_class=JSONResponse,
    responses={200: {"description": '`{"root": Node}`, the call-tree contract'}},
)
def workflow_tree(
    request: Request, namespace: str, workflow_id: str, run_id: str | None = None
) -> JSONResponse:
    """The call tree containing a workflow, rooted at its topmost caller.

    With access tokens, nodes outside the viewer's namespaces keep only their structure
    (``workflow_id``, ``run_id`` and ``error`` are ``null``).
    """
    return _tree_answer(request, namespace, workflow_id, run_id, NodeKind.WORKFLOW)


@api_router.get(
    "/api/nexus-operations/{namespace}/{operation_id:path}/tree",
    tags=["trees"],
    dependencies=[Depends(refresh_operation_pending)],
    response_class=JSONResponse,
    responses={200: {"description": '`{"root": Node}`, the call-tree contract'}},
)
def operation_tree(
    request: Request, namespace: str, operation_id: str, run_id: str | None = None
) -> JSONResponse:
    """The call tree of a standalone Nexus operation (started by a client, not a
    workflow): the operation is its root, its handler below it."""
    return _tree_answer(request, namespace, operation_id, run_id, NodeKind.NEXUS_OPERATION)


def _tree_answer(
    request: Request, namespace: str, entry_id: str, run_id: str | None, kind: NodeKind
) -> JSONResponse:
    namespace, entry_id, run_id = _tree_params(namespace, entry_id, run_id)
    scope = Scope.of(viewer_of(request).namespaces)
    root = store_of(request).tree(namespace, entry_id, run_id, scope=scope, kind=kind)
    if root is None:
        raise _missing(namespace, entry_id, kind)
    refresh_open_runs(store_of(request), root)
    figures = figures_of(root)
    summary = _figures_json(
        scope,
        node_count=figures.node_count,
        error_count=figures.error_count,
        first_error=figures.first_error,
        namespaces=figures.namespaces,
        caller_duration_s=figures.caller_duration_s(),
        tree_duration_s=figures.tree_duration_s(),
    )
    # Already plain JSON: skip FastAPI's per-value encoding of a thousand-node tree.
    return JSONResponse({"root": root.to_json(), "summary": summary})


@api_router.get(
    "/api/workflows/{namespace}/{workflow_id:path}/nodes/{index}",
    tags=["trees"],
    response_class=JSONResponse,
    responses={200: {"description": '`{"node": NodeDetail, "html": "..."}`'}},
)
def tree_node(
    request: Request, namespace: str, workflow_id: str, index: str, run_id: str | None = None
) -> JSONResponse:
    """One node of the call tree containing a workflow, by its depth-first ``index`` (the
    tree page's ``n<index>``): ids, timing, details, spans, the decoded operation token and
    the diagnosis of a failed cross-namespace call, as JSON and as the detail panel's HTML.

    Nodes outside the viewer's namespaces keep only their structure and have no spans.
    """
    return _node_answer(request, namespace, workflow_id, index, run_id, NodeKind.WORKFLOW)


@api_router.get(
    "/api/nexus-operations/{namespace}/{operation_id:path}/nodes/{index}",
    tags=["trees"],
    response_class=JSONResponse,
    responses={200: {"description": '`{"node": NodeDetail, "html": "..."}`'}},
)
def operation_tree_node(
    request: Request, namespace: str, operation_id: str, index: str, run_id: str | None = None
) -> JSONResponse:
    """One node of a standalone operation's call tree (see ``tree_node``)."""
    return _node_answer(request, namespace, operation_id, index, run_id, NodeKind.NEXUS_OPERATION)


def _node_answer(
    request: Request,
    namespace: str,
    entry_id: str,
    index: str,
    run_id: str | None,
    kind: NodeKind,
) -> JSONResponse:
    namespace, entry_id, run_id = _tree_params(namespace, entry_id, run_id)
    position = bounded_int(index, "index", 0, MAX_NODE_INDEX)
    scope = Scope.of(viewer_of(request).namespaces)
    settings = settings_of(request)
    detail = store_of(request).tree_node(
        namespace, entry_id, run_id, index=position, scope=scope, kind=kind
    )
    if detail is None:
        raise HTTPException(
            status_code=404,
            detail=f"no node {position} in the tree of {echo(entry_id)} in {echo(namespace)}",
        )
    view = detail_view(
        detail,
        position,
        settings.temporal_ui_link,
        lambda ns, wid, run: tree_href(request, ns, wid, run),
    )
    html = templates.get_template("_detail.html").render(
        v=view, live_diagnosis=settings.connections is not None
    )
    return JSONResponse({"node": _detail_json(view), "html": html})


def _span_json(span: SpanInfo) -> dict[str, Any]:
    return {
        "name": span.name,
        "trace_id": span.trace_id,
        "span_id": span.span_id,
        "service_name": span.service_name,
        "duration_ms": round(span.duration_ms, 3),
        "status_code": span.status_code,
        "status_message": span.status_message,
        "namespace": span.namespace,
        "attributes": span.attributes,
        "dropped_attributes_count": span.dropped_attributes,
        "dropped_events_count": span.dropped_events,
        "dropped_links_count": span.dropped_links,
    }


def _detail_json(view: ViewNode) -> dict[str, Any]:
    node: TreeNode = view.node
    diagnosis = view.diagnosis
    return {
        "index": view.index,
        "kind": node.kind,
        "namespace": node.namespace,
        "name": node.name,
        "workflow_id": node.workflow_id,
        "run_id": node.run_id,
        "status": node.status,
        "start_time": iso_time(node.start_time),
        "end_time": iso_time(node.end_time),
        "error": node.error,
        "link": node.link,
        "verified": node.verified,
        "restricted": view.restricted,
        "details": node.details,
        "operation_token": view.token,
        "history_url": view.ui_url,
        "spans": [_span_json(span) for span in view.spans],
        "diagnosis": (
            {
                "kind": diagnosis.kind,
                "title": diagnosis.title,
                "summary": diagnosis.summary,
                "checks": [vars(check) for check in diagnosis.checks],
                "live": diagnosis.live,
            }
            if diagnosis is not None
            else None
        ),
    }


def _figures_json(
    scope: Scope,
    *,
    node_count: int,
    error_count: int,
    first_error: dict[str, str] | None,
    namespaces: list[str],
    caller_duration_s: float,
    tree_duration_s: float,
) -> dict[str, Any]:
    """A tree's figures under the same names in search rows and tree answers."""
    return {
        "namespaces": namespaces,
        "node_count": node_count,
        "error_count": error_count,
        "first_error": scope.first_error(first_error),
        "caller_duration_ms": round(caller_duration_s * 1000, 1),
        "tree_duration_ms": round(tree_duration_s * 1000, 1),
    }


def _summary_json(row: TraceSummary, scope: Scope) -> dict[str, Any]:
    return {
        "namespace": row.namespace,
        "workflow_type": row.workflow_type,
        "workflow_id": row.workflow_id,
        "run_id": row.run_id,
        "kind": row.kind,
        "status": row.status,
        "start_time": iso_time(row.start_time),
        "end_time": iso_time(row.end_time),
        **_figures_json(
            scope,
            node_count=row.node_count,
            error_count=row.error_count,
            first_error=row.first_error,
            namespaces=row.namespaces,
            caller_duration_s=row.caller_duration_s,
            tree_duration_s=row.tree_duration_s,
        ),
    }


@api_router.get("/api/traces", tags=["trees"])
def traces(request: Request) -> dict[str, Any]:
    """Recent call trees across namespaces, newest first, paginated.

    Query parameters (all optional, the same as the search page's URL): ``namespace``,
    ``workflow_type``, ``workflow_id`` (substring), ``status``, ``since``/``until`` (ISO
    8601) or ``window`` (``15m``, ``1h``, ``6h``, ``24h``, ``7d``, ``30d``),
    ``min_duration`` (seconds, 0 to ten years), ``page`` (1 to 10,000), ``page_size``
    (1 to 200, default 25). A value out of its range is a 400.
    """
    criteria, _ = filter_from_query(request)
    scope = Scope.of(viewer_of(request).namespaces)
    result = store_of(request).search(criteria, scope=scope)
    return {
        "traces": [_summary_json(row, scope) for row in result.rows],
        "total": result.total,
        "page": result.page,
        "page_size": result.page_size,
        "pages": result.pages,
    }


@api_router.get("/api/map", tags=["trees"])
def namespace_map_json(request: Request, window: str = "24h") -> dict[str, Any]:
    """Which namespaces called which in the window: calls, error rate, p95 latency.

    With access tokens, calls between two namespaces the viewer may not see are left
    out, and a hidden namespace the collector does not link reads ``(hidden)``.
    """
    since = window_start(window)
    scope = Scope.of(viewer_of(request).namespaces)
    graph = store_of(request).namespace_map(since=since, scope=scope)
    return {
        "window": window,
        "namespaces": graph.namespaces,
        "edges": [edge.to_json() for edge in graph.edges],
    }


@api_router.get("/api/diagnosis", tags=["trees"])
async def live_diagnosis(
    request: Request,
    namespace: str,
    task_queue: str,
    workflow_id: str | None = None,
    run_id: str | None = None,
) -> dict[str, Any]:
    """Ask Temporal what a failed cross-namespace call's handler side looks like now:
    pollers on the handler task queue (workflow and Nexus), and the handler workflow's
    status and pending work."""
    namespace = bounded_text(namespace, "namespace", MAX_NAMESPACE_BYTES)
    task_queue = bounded_text(task_queue, "task_queue", MAX_ID_BYTES)
    workflow_id = optional_text(workflow_id, "workflow_id", MAX_ID_BYTES)
    run_id = optional_text(run_id, "run_id", MAX_RUN_ID_BYTES)
    viewer = viewer_of(request)
    connections = settings_of(request).connections
    if not viewer.can_see(namespace):
        raise HTTPException(status_code=404, detail=f"unknown namespace {echo(namespace)}")
    if connections is None:
        raise HTTPException(status_code=501, detail="the tracer has no Temporal connections")
    if namespace not in connections.namespaces:
        raise HTTPException(status_code=404, detail=f"unknown namespace {echo(namespace)}")
    from temporalio.api.common.v1 import WorkflowExecution
    from temporalio.api.enums.v1 import TaskQueueType
    from temporalio.api.taskqueue.v1 import TaskQueue
    from temporalio.api.workflowservice.v1 import (
        DescribeTaskQueueRequest,
        DescribeWorkflowExecutionRequest,
    )

    answer: dict[str, Any] = {"namespace": namespace, "task_queue": task_queue}

    async def ask() -> None:
        client = await connections.client(namespace)
        service = client.workflow_service
        pollers: dict[str, Any] = {}
        for label, queue_type in (
            ("workflow", TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW),
            ("nexus", TaskQueueType.TASK_QUEUE_TYPE_NEXUS),
        ):
            described = await service.describe_task_queue(
                DescribeTaskQueueRequest(
                    namespace=namespace,
                    task_queue=TaskQueue(name=task_queue),
                    task_queue_type=queue_type,
                ),
                timeout=timedelta(seconds=5),
            )
            pollers[label] = [p.identity for p in described.pollers]
        answer["pollers"] = pollers
        if workflow_id:
            execution = await service.describe_workflow_execution(
                DescribeWorkflowExecutionRequest(
                    namespace=namespace,
                    execution=WorkflowExecution(workflow_id=workflow_id, run_id=run_id or ""),
                ),
                timeout=timedelta(seconds=5),
            )
            info = execution.workflow_execution_info
            answer["workflow"] = {
                "status": info.status,
                "status_name": _status_name(int(info.status)),
                "history_length": info.history_length,
                "pending_activities": [
                    {
                        "activity_type": p.activity_type.name,
                        "attempt": p.attempt,
                        "last_failure": p.last_failure.message or None,
                    }
                    for p in execution.pending_activities
                ],
                "pending_nexus_operations": [
                    {"operation": p.operation, "attempt": p.attempt}
                    for p in execution.pending_nexus_operations
                ],
            }

    try:
        # One deadline for the whole conversation: an unreachable server costs 5 s, not 15.
        await asyncio.wait_for(ask(), DIAGNOSIS_TIMEOUT_S)
    except TimeoutError:
        answer["error"] = f"Temporal did not answer within {DIAGNOSIS_TIMEOUT_S:g} s"
    except Exception as err:  # report what Temporal said instead of failing the page
        answer["error"] = f"{type(err).__name__}: {err}"
    return answer


def _status_name(value: int) -> str:
    try:
        return ExecutionStatus(value).label
    except ValueError:
        return "unknown"
