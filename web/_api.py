"""JSON API: health, linker status per namespace, and the call-tree contract."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, Request
from sqlalchemy import text

from tracer._tree import build_tree

from ._deps import store_of

__all__ = ["api_router"]

api_router = APIRouter()


@api_router.get("/healthz", tags=["health"])
def healthz() -> dict[str, str]:
    """200 once the API is up."""
    return {"status": "ok"}


@api_router.get("/readyz", tags=["health"])
def readyz(request: Request) -> dict[str, str]:
    """200 when the store answers; 503 otherwise."""
    try:
        with store_of(request).engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except Exception as err:  # any database failure means "not ready"
        raise HTTPException(status_code=503, detail=f"store unavailable: {err}") from err
    return {"status": "ready"}


@api_router.get("/api/namespaces", tags=["linker"])
def namespaces(request: Request) -> dict[str, list[dict[str, Any]]]:
    """The linker's state in each configured namespace."""
    return {
        "namespaces": [
            {
                "namespace": state.namespace,
                "status": state.status,
                "last_error": state.last_error,
                "last_poll_at": state.last_poll_at.isoformat() if state.last_poll_at else None,
                "close_cursor": state.close_cursor.isoformat() if state.close_cursor else None,
                "runs_linked": state.runs_linked,
            }
            for state in store_of(request).all_namespace_states()
        ]
    }


@api_router.get("/api/workflows/{namespace}/{workflow_id:path}/tree", tags=["trees"])
def workflow_tree(
    request: Request, namespace: str, workflow_id: str, run_id: str | None = None
) -> dict[str, Any]:
    """The call tree containing a workflow, rooted at its topmost caller."""
    with store_of(request).session() as session:
        root = build_tree(session, namespace, workflow_id, run_id)
    if root is None:
        raise HTTPException(
            status_code=404, detail=f"no workflow {workflow_id!r} in namespace {namespace!r}"
        )
    return {"root": root.to_json()}
