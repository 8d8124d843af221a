"""Server-rendered pages: search, the call tree, the namespace map and the login form."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from tracer.domain import NodeKind, Status
from tracer.query import Scope, TreeNode, figures_of

from ._access import COOKIE_NAME, FailedLogins, client_of, same_origin, viewer_of
from ._deps import refresh_open_runs, settings_of, store_of
from ._format import fmt_duration, fmt_time, namespace_hue, split_name, wrap_at_separators
from ._mapsvg import render_map_svg
from ._params import (
    MAX_ID_BYTES,
    MAX_NAMESPACE_BYTES,
    MAX_RUN_ID_BYTES,
    PAGE_SIZES,
    STATUSES,
    WINDOWS,
    bounded_text,
    echo,
    filter_from_query,
    optional_text,
    window_start,
)
from ._pending import refresh_operation_pending, refresh_pending
from ._view import build_view

__all__ = ["namespace_hue", "pages_router", "templates", "tree_href"]

templates = Jinja2Templates(directory=Path(__file__).parent / "templates")
pages_router = APIRouter(include_in_schema=False)


STATUS_ICONS = {
    Status.COMPLETED: "✓",
    Status.FAILED: "✕",
    Status.TIMED_OUT: "◷",
    Status.RUNNING: "▶",
    Status.CANCELED: "⊘",
    Status.TERMINATED: "■",
    Status.ABANDONED: "◌",
}

KIND_LABELS = {
    NodeKind.WORKFLOW: "workflow",
    NodeKind.ACTIVITY: "activity",
    NodeKind.NEXUS_OPERATION: "nexus op",
    NodeKind.NEXUS_HANDLER: "handler",
    NodeKind.CHILD_WORKFLOW: "child",
    NodeKind.HTTP_CALL: "http",
    NodeKind.SIGNAL: "signal",
    NodeKind.UPDATE: "update",
}


def short_name(kind: str, name: str) -> str:
    """The row label of a node: a Nexus call drops its endpoint (shown in the detail)."""
    if kind == NodeKind.NEXUS_OPERATION and name.count("/") >= 2:
        return name.split("/", 1)[1]
    return name


templates.env.globals.update(
    kind_labels=KIND_LABELS,
    short_name=short_name,
    namespace_hue=namespace_hue,
    fmt_duration=fmt_duration,
    split_name=split_name,
    wrap_at_separators=wrap_at_separators,
    fmt_time=fmt_time,
    status_icons=STATUS_ICONS,
)


def tree_href(request: Request, namespace: str, workflow_id: str, run_id: str | None) -> str:
    """The path of the tree page of a workflow (at ``run_id`` when given)."""
    url = str(request.url_for("tree_page", namespace=namespace, workflow_id=workflow_id).path)
    return f"{url}?{urlencode({'run_id': run_id})}" if run_id else url


def operation_href(request: Request, namespace: str, operation_id: str, run_id: str | None) -> str:
    """The path of the tree page of a standalone Nexus operation."""
    url = str(
        request.url_for("operation_page", namespace=namespace, operation_id=operation_id).path
    )
    return f"{url}?{urlencode({'run_id': run_id})}" if run_id else url


def _detail_href(
    request: Request, namespace: str, entry_id: str, run_id: str | None, kind: NodeKind
) -> str:
    """Where the tree page loads node ``{n}``'s detail from (the same tree: the run the
    page shows, not whichever run is latest when the node is clicked)."""
    if kind == NodeKind.NEXUS_OPERATION:
        route = request.url_for(
            "operation_tree_node", namespace=namespace, operation_id=entry_id, index="0"
        )
    else:
        route = request.url_for("tree_node", namespace=namespace, workflow_id=entry_id, index="0")
    url = str(route.path).removesuffix("/0") + "/{n}"
    return f"{url}?{urlencode({'run_id': run_id})}" if run_id else url


def _page_url(query: dict[str, str], page: int) -> str:
    return "?" + urlencode({**{k: v for k, v in query.items() if k != "page"}, "page": page})


@pages_router.get("/", response_class=HTMLResponse)
def index(request: Request) -> HTMLResponse:
    """Search recent call trees across namespaces; every filter lives in the URL."""
    criteria, query = filter_from_query(request)
    viewer = viewer_of(request)
    scope = Scope.of(viewer.namespaces)
    store = store_of(request)
    result = store.search(criteria, scope=scope)
    known = sorted(
        {state.namespace for state in store.linker_status(scope=scope)}
        | {ns for row in result.rows for ns in row.namespaces}
    )
    rows = []
    for row in result.rows:
        entry = store.tree_entry(row.root_pk, scope=scope)
        entry_href = operation_href if row.kind == NodeKind.NEXUS_OPERATION else tree_href
        href = entry_href(request, *entry) if entry is not None else None
        rows.append({"row": row, "href": href, "visible": scope.sees(row.namespace)})
    context: dict[str, Any] = {
        "result": result,
        "rows": rows,
        "query": query,
        "namespaces": known,
        "statuses": STATUSES,
        "windows": list(WINDOWS),
        "page_sizes": PAGE_SIZES,
        "prev_url": _page_url(query, result.page - 1) if result.page > 1 else None,
        "next_url": _page_url(query, result.page + 1) if result.page < result.pages else None,
        "viewer": viewer,
    }
    return templates.TemplateResponse(request, "search.html", context)


@pages_router.get(
    "/workflows/{namespace}/{workflow_id:path}",
    response_class=HTMLResponse,
    dependencies=[Depends(refresh_pending)],
)
def tree_page(
    request: Request, namespace: str, workflow_id: str, run_id: str | None = None
) -> HTMLResponse:
    """The call tree containing a workflow: waterfall and error paths; each node's detail
    loads on demand from ``/api/workflows/.../nodes/{index}``."""
    return _tree_page(request, namespace, workflow_id, run_id, NodeKind.WORKFLOW)


@pages_router.get(
    "/nexus-operations/{namespace}/{operation_id:path}",
    response_class=HTMLResponse,
    dependencies=[Depends(refresh_operation_pending)],
)
def operation_page(
    request: Request, namespace: str, operation_id: str, run_id: str | None = None
) -> HTMLResponse:
    """The call tree of a standalone Nexus operation, rooted at the operation."""
    return _tree_page(request, namespace, operation_id, run_id, NodeKind.NEXUS_OPERATION)


def _tree_page(
    request: Request, namespace: str, entry_id: str, run_id: str | None, kind: NodeKind
) -> HTMLResponse:
    namespace = bounded_text(namespace, "namespace", MAX_NAMESPACE_BYTES)
    entry_id = bounded_text(entry_id, "workflow_id", MAX_ID_BYTES)
    run_id = optional_text(run_id, "run_id", MAX_RUN_ID_BYTES)
    viewer = viewer_of(request)
    settings = settings_of(request)
    root = store_of(request).tree(namespace, entry_id, run_id, scope=viewer.namespaces, kind=kind)
    if root is None:
        what = "standalone operation" if kind == NodeKind.NEXUS_OPERATION else "workflow"
        raise HTTPException(
            status_code=404,
            detail=f"no {what} {echo(entry_id)} in namespace {echo(namespace)}",
        )
    refresh_open_runs(store_of(request), root)
    view = build_view(
        root,
        settings.temporal_ui_link,
        lambda ns, wid, run: tree_href(request, ns, wid, run),
    )
    focused = next(
        (
            v
            for v in view.nodes
            if v.node.namespace == namespace
            and _entry_id(v.node, kind) == entry_id
            and (run_id is None or _entry_run_id(v.node, kind) == run_id)
        ),
        None,
    )
    focused_run = _entry_run_id(focused.node, kind) if focused else run_id
    context: dict[str, Any] = {
        "view": view,
        "figures": figures_of(root),
        "root": view.root,
        "focus": focused.id if focused else None,
        "detail_url": _detail_href(request, namespace, entry_id, focused_run, kind),
        "viewer": viewer,
    }
    return templates.TemplateResponse(request, "tree.html", context)


def _entry_id(node: TreeNode, kind: NodeKind) -> str | None:
    """The id a tree page is asked by: a workflow id, or a standalone operation's id."""
    if kind == NodeKind.NEXUS_OPERATION:
        return node.details.get("operation_id") if node.kind == kind else None
    return node.workflow_id


def _entry_run_id(node: TreeNode, kind: NodeKind) -> str | None:
    if kind == NodeKind.NEXUS_OPERATION:
        return node.details.get("operation_run_id") if node.kind == kind else None
    return node.run_id


@pages_router.get("/map", response_class=HTMLResponse)
def map_page(request: Request, window: str = "24h") -> HTMLResponse:
    """Which namespaces call which: calls, error rate and p95 latency over a window."""
    since = window_start(window)
    viewer = viewer_of(request)
    graph = store_of(request).namespace_map(since=since, scope=viewer.namespaces)
    context: dict[str, Any] = {
        "graph": graph,
        "svg": render_map_svg(graph),
        "window": window,
        "windows": list(WINDOWS),
        "viewer": viewer,
    }
    return templates.TemplateResponse(request, "map.html", context)


@pages_router.get("/login", response_class=HTMLResponse)
def login_form(request: Request, next: str = "/") -> HTMLResponse:
    """Ask for an access token."""
    return templates.TemplateResponse(
        request, "login.html", {"next": _safe_next(next), "failed": False}
    )


def _safe_next(target: str) -> str:
    """Only same-site paths of sane length, never ``//host``, ``/\\host`` or absolute URLs."""
    if len(target) > 2000 or any(ord(char) < 32 for char in target):
        return "/"
    if not target.startswith("/") or target.startswith(("//", "/\\")):
        return "/"
    return target


def _cross_site() -> Response:
    return PlainTextResponse("cross-site request refused: Origin is not this site", 403)


@pages_router.post("/login", response_class=HTMLResponse)
async def login(request: Request) -> Response:
    """Check the token and keep it in an HTTP-only cookie (``Secure`` over HTTPS).

    Only this site's own form may post here (``Origin``/``Referer``), and a client that
    failed too often gets 429 with ``Retry-After``.
    """
    if not same_origin(request):
        return _cross_site()
    body = await request.body()
    form = parse_qs(body[:8192].decode(errors="replace"))
    token = (form.get("token") or [""])[0].strip()
    target = _safe_next((form.get("next") or ["/"])[0])
    registry = settings_of(request).token_registry()
    failures: FailedLogins = request.app.state.failed_logins
    client = client_of(request)
    wait = failures.retry_after(client)
    if wait is not None:
        return templates.TemplateResponse(
            request,
            "login.html",
            {"next": target, "failed": False, "retry_after": wait},
            status_code=429,
            headers={"Retry-After": str(wait)},
        )
    if registry is None or registry.viewer(token) is None:
        failures.failed(client)
        return templates.TemplateResponse(
            request, "login.html", {"next": target, "failed": True}, status_code=401
        )
    failures.succeeded(client)
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(
        COOKIE_NAME,
        token,
        httponly=True,
        samesite="strict",
        path="/",
        secure=request.url.scheme == "https",
    )
    return response


@pages_router.post("/logout")
def logout(request: Request) -> Response:
    """Forget the token cookie (from this site's own pages only)."""
    if not same_origin(request):
        return _cross_site()
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(COOKIE_NAME, path="/")
    return response
