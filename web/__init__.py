"""The temporal-tracer web UI and JSON API (FastAPI + Jinja2)."""

from ._app import WebSettings, create_app

__all__ = ["WebSettings", "create_app"]
