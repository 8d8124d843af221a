"""The FastAPI application: JSON API and server-rendered pages over one store."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.middleware.gzip import GZipMiddleware

from tracer.store import Store

from ._access import (
    COOKIE_NAME,
    OPEN_VIEWER,
    FailedLogins,
    client_of,
    host_allowed,
    presented_token,
    request_host,
)
from ._api import api_router
from ._apidocs import add_api_docs
from ._errors import add_error_pages
from ._pages import pages_router
from ._settings import WebSettings

__all__ = ["WebSettings", "create_app"]

STATIC_DIR = Path(__file__).parent / "static"
# Paths anyone may reach even when access tokens are configured.
PUBLIC_PREFIXES = ("/healthz", "/readyz", "/login", "/static/")
# Probes reach a collector by its address, whatever name it is known by.
ANY_HOST_PATHS = ("/healthz", "/readyz")


def create_app(store: Store, settings: WebSettings | None = None) -> FastAPI:
    """The web application serving ``store``.

    Raises:
        ValueError: when the configured tokens file is malformed.
    """
    app = FastAPI(
        title="temporal-tracer",
        summary="Cross-namespace call trees of Temporal workflows",
        version="0.1.0",
        docs_url=None,  # served by add_api_docs, from local assets
        redoc_url=None,
    )
    web_settings = settings or WebSettings()
    registry = web_settings.token_registry()  # fail at start, not at the first request
    failed_logins = FailedLogins(limit=web_settings.failed_login_limit)
    allowed_hosts = list(web_settings.allowed_hosts)
    app.state.store = store
    app.state.settings = web_settings
    app.state.failed_logins = failed_logins

    @app.middleware("http")
    async def access(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        request.state.viewer = OPEN_VIEWER
        path = request.url.path
        if not path.startswith(ANY_HOST_PATHS) and not host_allowed(
            request_host(request), allowed_hosts
        ):
            return PlainTextResponse("Invalid host header (see --allowed-hosts)", 400)
        if registry is not None and not path.startswith(PUBLIC_PREFIXES):
            api = path.startswith(("/api/", "/docs", "/openapi", "/redoc"))
            token = presented_token(request)
            viewer = None
            if token:
                client = client_of(request)
                wait = failed_logins.retry_after(client)
                if wait is not None:
                    return JSONResponse(
                        {"detail": f"too many failed token checks: retry in {wait} s"},
                        status_code=429,
                        headers={"Retry-After": str(wait)},
                    )
                viewer = registry.viewer(token)
                if viewer is None:
                    failed_logins.failed(client)
                else:
                    failed_logins.succeeded(client)
            if viewer is None:
                if api:
                    return JSONResponse(
                        {"detail": "an access token is required"},
                        status_code=401,
                        headers={"WWW-Authenticate": "Bearer"},
                    )
                target = path + (f"?{request.url.query}" if request.url.query else "")
                redirect = RedirectResponse(f"/login?next={quote(target, safe='')}", 303)
                if request.cookies.get(COOKIE_NAME):  # a stale cookie: stop presenting it
                    redirect.delete_cookie(COOKIE_NAME, path="/")
                return redirect
            request.state.viewer = viewer
        response = await call_next(request)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        is_html = response.headers.get("content-type", "").startswith("text/html")
        if is_html:  # the API docs too: their assets and init script are local
            response.headers.setdefault(
                "Content-Security-Policy",
                "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
                "connect-src 'self'; frame-ancestors 'none'",
            )
        return response

    @app.exception_handler(RequestValidationError)
    async def bad_parameter(request: Request, error: RequestValidationError) -> JSONResponse:
        # One line naming the parameter, as the routes' own checks answer (not a 422 list).
        first = error.errors()[0] if error.errors() else {}
        where = str((first.get("loc") or ("request",))[-1])
        return JSONResponse({"detail": f"{where}: {first.get('msg', 'invalid')}"}, 400)

    # A thousand-row tree page is ~270 KiB of near-identical markup and ~10 KiB gzipped.
    # Responses only go to the cookie's own site (SameSite=strict), so compression gives a
    # cross-site page nothing to measure.
    app.add_middleware(GZipMiddleware, minimum_size=1024)
    app.include_router(api_router)
    app.include_router(pages_router)
    add_api_docs(app)
    add_error_pages(app)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    return app
