"""The OpenAPI docs (``/docs``, ``/redoc``) from local assets, under the pages' CSP.

FastAPI's own pages load Swagger UI and ReDoc from a public CDN, so they are blank offline
and need exceptions to the Content-Security-Policy. Here the assets come from the
``fastapi-offline`` package (Swagger UI and ReDoc dist files) and Swagger UI starts from a
static script, not an inline one, so ``script-src 'self'`` holds. ReDoc runs without its
search, whose web worker a ``blob:`` URL would have to be allowed for, and its bundle is
served with the Redocly logo pointing here instead of at Redocly's CDN.
"""

from __future__ import annotations

from functools import cache
from html import escape
from importlib.resources import files
from pathlib import Path

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import HTMLResponse, Response
from fastapi.staticfiles import StaticFiles

__all__ = ["ASSETS_DIR", "ASSETS_PATH", "add_api_docs"]

ASSETS_DIR = Path(str(files("fastapi_offline").joinpath("static")))
# Under /static/, which needs no access token, like the UI's own assets.
ASSETS_PATH = "/static/apidocs"
# The one external URL in ReDoc's bundle: the "API docs by Redocly" logo in its side menu.
REDOCLY_LOGO = "https://cdn.redoc.ly/redoc/logo-mini.svg"


@cache
def _redoc_bundle() -> bytes:
    text = (ASSETS_DIR / "redoc.standalone.js").read_text(encoding="utf-8")
    # A relative URL resolves against the page (/redoc), so it works under a root path too.
    return text.replace(REDOCLY_LOGO, f".{ASSETS_PATH}/favicon.png").encode()


def _page(title: str, head: str, body: str) -> HTMLResponse:
    return HTMLResponse(
        "<!doctype html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{escape(title)}</title>\n{head}</head>\n<body>\n{body}</body>\n</html>\n"
    )


def add_api_docs(app: FastAPI) -> None:
    """Serve ``/docs`` and ``/redoc`` on ``app`` (created with ``docs_url=None,
    redoc_url=None``); call before mounting ``/static``, which would shadow the assets."""
    if not (ASSETS_DIR / "swagger-ui-bundle.js").is_file():
        raise RuntimeError(f"Swagger UI assets are missing from {ASSETS_DIR}")
    router = APIRouter(include_in_schema=False)

    # Before the mount, which would otherwise serve the file as it is.
    @router.get(f"{ASSETS_PATH}/redoc.standalone.js")
    def redoc_bundle() -> Response:
        return Response(
            _redoc_bundle(),
            media_type="text/javascript",
            headers={"Cache-Control": "public, max-age=86400"},
        )

    def urls(request: Request) -> tuple[str, str, str]:
        """The app's root path, the assets' URL and the spec's URL, escaped for HTML."""
        root = request.scope.get("root_path", "")
        return escape(root), escape(root + ASSETS_PATH), escape(root + str(app.openapi_url))

    @router.get("/docs", response_class=HTMLResponse)
    def swagger_ui(request: Request) -> HTMLResponse:
        root, assets, spec = urls(request)
        # The init script reads the spec URL from the page: no inline script to allow.
        return _page(
            f"{app.title} - Swagger UI",
            f'<link rel="stylesheet" href="{assets}/swagger-ui.css">\n'
            f'<link rel="icon" href="{assets}/favicon.png">\n',
            f'<div id="swagger-ui" data-openapi-url="{spec}"></div>\n'
            f'<script src="{assets}/swagger-ui-bundle.js"></script>\n'
            f'<script src="{root}/static/swagger-init.js"></script>\n',
        )

    @router.get("/redoc", response_class=HTMLResponse)
    def redoc(request: Request) -> HTMLResponse:
        _, assets, spec = urls(request)
        return _page(
            f"{app.title} - ReDoc",
            f'<link rel="icon" href="{assets}/favicon.png">\n',
            f'<redoc spec-url="{spec}" disable-search></redoc>\n'
            f'<script src="{assets}/redoc.standalone.js"></script>\n',
        )

    app.include_router(router)
    app.mount(ASSETS_PATH, StaticFiles(directory=ASSETS_DIR), name="apidocs")
