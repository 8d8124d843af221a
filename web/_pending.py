"""Fresh pending state before a tree is shown: a running call's retries and last failure
are read from Temporal at request time when what the store holds is older than a couple
of seconds (a bounded number of describes, under a deadline)."""

from __future__ import annotations

from fastapi import Request

from tracer.domain import NodeKind
from tracer.link import refresh_tree_pending

from ._access import viewer_of
from ._deps import settings_of, store_of
from ._params import (
    MAX_ID_BYTES,
    MAX_NAMESPACE_BYTES,
    MAX_RUN_ID_BYTES,
    bounded_text,
    optional_text,
)

__all__ = ["refresh_operation_pending", "refresh_pending"]


async def refresh_pending(
    request: Request, namespace: str, workflow_id: str, run_id: str | None = None
) -> None:
    """A route dependency: refresh the pending state of the tree a request asks for. It
    names runs only to Temporal, never to the viewer; the route applies the viewer's scope."""
    await _refresh(request, namespace, workflow_id, run_id, NodeKind.WORKFLOW)


async def refresh_operation_pending(
    request: Request, namespace: str, operation_id: str, run_id: str | None = None
) -> None:
    """:func:`refresh_pending` for the tree of a standalone Nexus operation."""
    await _refresh(request, namespace, operation_id, run_id, NodeKind.NEXUS_OPERATION)


async def _refresh(
    request: Request, namespace: str, entry_id: str, run_id: str | None, kind: NodeKind
) -> None:
    connections = settings_of(request).connections
    namespace = bounded_text(namespace, "namespace", MAX_NAMESPACE_BYTES)
    if connections is None or not viewer_of(request).can_see(namespace):
        return
    await refresh_tree_pending(
        store_of(request),
        connections,
        namespace,
        bounded_text(entry_id, "workflow_id", MAX_ID_BYTES),
        optional_text(run_id, "run_id", MAX_RUN_ID_BYTES),
        kind,
    )
