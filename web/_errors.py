"""Error pages for people: an unknown workflow, namespace or page answers with an HTML page
that keeps search at hand. Programs keep their JSON: anything under ``/api/``, and any
request that asks for JSON and not for HTML."""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote

from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.responses import Response
from starlette.exceptions import HTTPException

from tracer.query import Scope

from ._access import viewer_of
from ._deps import store_of
from ._pages import templates

__all__ = ["add_error_pages", "wants_json"]

# Paths whose callers are programs, whatever they accept.
JSON_PREFIXES = ("/api/", "/healthz", "/readyz", "/openapi.json", "/v1/")


def wants_json(request: Request) -> bool:
    """Whether the answer should be JSON: an API path, or a client that asks for JSON and
    does not ask for HTML (a browser's ``Accept`` names ``text/html``)."""
    if request.url.path.startswith(JSON_PREFIXES):
        return True
    accept = request.headers.get("accept", "")
    return "application/json" in accept and "text/html" not in accept


def _not_found_context(request: Request, detail: str) -> dict[str, Any]:
    """What the page offers: the known namespaces (those the viewer may see) and, for a
    tree that was not found, a search for its id across every namespace."""
    viewer = viewer_of(request)
    scope = Scope.of(viewer.namespaces)
    try:
        known = sorted(state.namespace for state in store_of(request).linker_status(scope=scope))
    except Exception:  # the page must render even when the store cannot answer
        known = []
    namespace = workflow_id = None
    parts = request.url.path.split("/", 3)
    if len(parts) == 4 and parts[1] == "workflows":
        namespace, workflow_id = unquote(parts[2]), unquote(parts[3])
    return {
        "detail": detail,
        "namespace": namespace,
        "workflow_id": workflow_id,
        "unknown_namespace": namespace is not None and namespace not in known,
        "namespaces": known,
        "viewer": viewer,
    }


def add_error_pages(app: FastAPI) -> None:
    """Answer 404s of pages with the ``not_found.html`` page."""

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, error: HTTPException) -> Response:
        if error.status_code != 404 or wants_json(request):
            return await http_exception_handler(request, error)
        detail = error.detail if isinstance(error.detail, str) else "Not Found"
        return templates.TemplateResponse(
            request,
            "not_found.html",
            _not_found_context(request, detail),
            status_code=404,
            headers=getattr(error, "headers", None),
        )
