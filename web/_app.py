"""The FastAPI application: JSON API and server-rendered pages over one store."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from tracer._store import Store

from ._api import api_router
from ._pages import pages_router

__all__ = ["WebSettings", "create_app"]

STATIC_DIR = Path(__file__).parent / "static"


@dataclass
class WebSettings:
    """What the UI needs beyond the store.

    Args:
        temporal_ui_urls: Base URL of the Temporal Web UI per namespace; the key ``"*"``
            applies to namespaces not listed.
    """

    temporal_ui_urls: dict[str, str] = field(default_factory=dict)

    def temporal_ui_link(self, namespace: str, workflow_id: str, run_id: str) -> str | None:
        """Link to a run's history in the Temporal Web UI, when a base URL is known."""
        base = self.temporal_ui_urls.get(namespace) or self.temporal_ui_urls.get("*")
        if not base:
            return None
        return f"{base.rstrip('/')}/namespaces/{namespace}/workflows/{workflow_id}/{run_id}/history"


def create_app(store: Store, settings: WebSettings | None = None) -> FastAPI:
    """The web application serving ``store``."""
    app = FastAPI(
        title="temporal-tracer",
        summary="Cross-namespace call trees of Temporal workflows",
        version="0.1.0",
    )
    app.state.store = store
    app.state.settings = settings or WebSettings()
    app.include_router(api_router)
    app.include_router(pages_router)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    return app
