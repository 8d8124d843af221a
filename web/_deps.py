"""Request-scoped access to what the app was created with."""

from __future__ import annotations

import logging
from typing import cast

from fastapi import Request
from sqlalchemy.exc import SQLAlchemyError

from tracer.domain import NodeKind, Status
from tracer.query import TreeNode
from tracer.store import Store, StoreUnavailableError

from ._settings import WebSettings

__all__ = ["refresh_open_runs", "settings_of", "store_of"]

logger = logging.getLogger(__name__)

# Open runs one page view asks the linker to read again: a huge open tree does not turn
# one request into thousands of history reads (they wait for the budget anyway).
MAX_REFRESH_PER_VIEW = 100


def store_of(request: Request) -> Store:
    """The store the app serves."""
    return cast(Store, request.app.state.store)


def settings_of(request: Request) -> WebSettings:
    """The app's web settings."""
    return cast(WebSettings, request.app.state.settings)


def refresh_open_runs(store: Store, root: TreeNode) -> None:
    """Ask the linker to read the open runs of a tree someone is looking at: what they
    did since their last read shows on the next load. Best effort: a store that cannot
    take the request still shows the tree."""
    runs = [
        (node.namespace, node.run_id)
        for node in root.walk()
        if node.kind == NodeKind.WORKFLOW and node.status == Status.RUNNING and node.run_id
    ]
    if not runs:
        return
    try:
        store.request_refresh(runs[:MAX_REFRESH_PER_VIEW])
    except (SQLAlchemyError, StoreUnavailableError) as err:
        logger.debug("could not ask for a refresh of %d runs: %s", len(runs), err)
