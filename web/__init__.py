"""The temporal-tracer web UI and JSON API (FastAPI + Jinja2)."""

from ._app import WebSettings, create_app
from ._settings import LOCAL_HOSTS

__all__ = ["LOCAL_HOSTS", "WebSettings", "create_app"]
