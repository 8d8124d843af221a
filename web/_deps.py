"""Request-scoped access to what the app was created with."""

from __future__ import annotations

from typing import cast

from fastapi import Request

from tracer.store import Store

from ._settings import WebSettings

__all__ = ["settings_of", "store_of"]


def store_of(request: Request) -> Store:
    """The store the app serves."""
    return cast(Store, request.app.state.store)


def settings_of(request: Request) -> WebSettings:
    """The app's web settings."""
    return cast(WebSettings, request.app.state.settings)
