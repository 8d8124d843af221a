"""Server-rendered pages: recent workflows and the call-tree page."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates
from sqlalchemy import select

from tracer._models import WorkflowRun
from tracer._tree import build_tree

from ._deps import settings_of, store_of

__all__ = ["pages_router", "templates"]

templates = Jinja2Templates(directory=Path(__file__).parent / "templates")
pages_router = APIRouter(include_in_schema=False)

RECENT_LIMIT = 100


def namespace_hue(namespace: str) -> int:
    """A stable color hue per namespace, so a namespace looks the same on every page."""
    return sum(ord(char) * 31 for char in namespace) % 360


templates.env.globals["namespace_hue"] = namespace_hue


@pages_router.get("/", response_class=HTMLResponse)
def index(request: Request) -> HTMLResponse:
    """The most recent workflow runs across namespaces."""
    with store_of(request).session() as session:
        runs = session.scalars(
            select(WorkflowRun).order_by(WorkflowRun.start_time.desc()).limit(RECENT_LIMIT)
        ).all()
    return templates.TemplateResponse(request, "index.html", {"runs": runs})


@pages_router.get("/workflows/{namespace}/{workflow_id:path}", response_class=HTMLResponse)
def tree_page(
    request: Request, namespace: str, workflow_id: str, run_id: str | None = None
) -> HTMLResponse:
    """The call tree containing a workflow, as HTML."""
    with store_of(request).session() as session:
        root = build_tree(session, namespace, workflow_id, run_id)
    if root is None:
        raise HTTPException(
            status_code=404, detail=f"no workflow {workflow_id!r} in namespace {namespace!r}"
        )
    context: dict[str, Any] = {
        "root": root,
        "focus": (namespace, workflow_id),
        "namespaces": sorted({node.namespace for node in root.walk()}),
        "settings": settings_of(request),
    }
    return templates.TemplateResponse(request, "tree.html", context)
