"""Server-rendered pages: search, the call tree, the namespace map and the login form."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from tracer.domain import NodeKind, Status
from tracer.query import figures_of

from ._access import COOKIE_NAME, viewer_of
from ._deps import settings_of, store_of
from ._mapsvg import render_map_svg
from ._params import PAGE_SIZES, STATUSES, WINDOWS, filter_from_query, parse_window
from ._view import build_view, redact

__all__ = ["namespace_hue", "pages_router", "templates"]

templates = Jinja2Templates(directory=Path(__file__).parent / "templates")
pages_router = APIRouter(include_in_schema=False)


def namespace_hue(namespace: str) -> int:
    """A stable color hue per namespace, so a namespace looks the same on every page."""
    return sum(ord(char) * 31 for char in namespace) % 360


def fmt_duration(seconds: float | None) -> str:
    """A duration for people: ``12 ms``, ``1.25 s``, ``3.4 min``."""
    if seconds is None:
        return "-"
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 120:
        return f"{seconds:.2f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def fmt_time(value: datetime | None) -> str:
    """A UTC timestamp with milliseconds."""
    if value is None:
        return "-"
    return value.strftime("%Y-%m-%d %H:%M:%S.") + f"{value.microsecond // 1000:03d} UTC"


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
    fmt_time=fmt_time,
    status_icons=STATUS_ICONS,
)


def _tree_href(request: Request, namespace: str, workflow_id: str, run_id: str | None) -> str:
    url = str(request.url_for("tree_page", namespace=namespace, workflow_id=workflow_id).path)
    return f"{url}?{urlencode({'run_id': run_id})}" if run_id else url


def _page_url(query: dict[str, str], page: int) -> str:
    return "?" + urlencode({**{k: v for k, v in query.items() if k != "page"}, "page": page})


@pages_router.get("/", response_class=HTMLResponse)
def index(request: Request) -> HTMLResponse:
    """Search recent call trees across namespaces; every filter lives in the URL."""
    criteria, query = filter_from_query(request)
    viewer = viewer_of(request)
    store = store_of(request)
    result = store.search(criteria)
    known = sorted(
        {state.namespace for state in store.namespace_states()}
        | {ns for row in result.rows for ns in row.namespaces}
    )
    rows = []
    for row in result.rows:
        entry = store.tree_entry(row.root_pk, viewer.namespaces)
        href = _tree_href(request, *entry) if entry is not None else None
        rows.append({"row": row, "href": href, "visible": viewer.can_see(row.namespace)})
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


@pages_router.get("/workflows/{namespace}/{workflow_id:path}", response_class=HTMLResponse)
def tree_page(
    request: Request, namespace: str, workflow_id: str, run_id: str | None = None
) -> HTMLResponse:
    """The call tree containing a workflow: waterfall, error paths and node detail."""
    viewer = viewer_of(request)
    settings = settings_of(request)
    missing = f"no workflow {workflow_id!r} in namespace {namespace!r}"
    if not viewer.can_see(namespace):
        raise HTTPException(status_code=404, detail=missing)
    store = store_of(request)
    found = store.tree_with_spans(namespace, workflow_id, run_id)
    if found is None:
        raise HTTPException(status_code=404, detail=missing)
    root, spans = found
    endpoints = {e.name: (e.namespace, e.task_queue) for e in store.endpoints()}
    visible = redact(root, viewer)
    spans = [s for s in spans if s.namespace is None or viewer.can_see(s.namespace)]
    view = build_view(
        visible,
        viewer,
        settings.temporal_ui_link,
        lambda ns, wid, run: _tree_href(request, ns, wid, run),
        spans,
        endpoints,
    )
    focus = next(
        (
            v.id
            for v in view.nodes
            if v.node.namespace == namespace
            and v.node.workflow_id == workflow_id
            and (run_id is None or v.node.run_id == run_id)
        ),
        None,
    )
    context: dict[str, Any] = {
        "view": view,
        "figures": figures_of(root),
        "root": view.root,
        "focus": focus,
        "viewer": viewer,
        "live_diagnosis": settings.connections is not None,
    }
    return templates.TemplateResponse(request, "tree.html", context)


@pages_router.get("/map", response_class=HTMLResponse)
def map_page(request: Request, window: str = "24h") -> HTMLResponse:
    """Which namespaces call which: calls, error rate and p95 latency over a window."""
    seconds = parse_window(window)
    if seconds is None:
        raise HTTPException(status_code=400, detail=f"window must be one of {list(WINDOWS)}")
    viewer = viewer_of(request)
    since = datetime.now(UTC) - timedelta(seconds=seconds)
    graph = store_of(request).namespace_map(since=since)
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
    """Only same-site paths, never ``//host`` or absolute URLs."""
    return target if target.startswith("/") and not target.startswith("//") else "/"


@pages_router.post("/login", response_class=HTMLResponse)
async def login(request: Request) -> Response:
    """Check the token and keep it in an HTTP-only cookie."""
    form = parse_qs((await request.body()).decode(errors="replace"))
    token = (form.get("token") or [""])[0].strip()
    target = _safe_next((form.get("next") or ["/"])[0])
    registry = settings_of(request).token_registry()
    if registry is None or registry.viewer(token) is None:
        return templates.TemplateResponse(
            request, "login.html", {"next": target, "failed": True}, status_code=401
        )
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(COOKIE_NAME, token, httponly=True, samesite="strict", path="/")
    return response


@pages_router.post("/logout")
def logout() -> Response:
    """Forget the token cookie."""
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(COOKIE_NAME, path="/")
    return response
