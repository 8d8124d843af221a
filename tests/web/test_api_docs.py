"""``/docs`` and ``/redoc`` in a real browser with no network but the server itself: every
asset is local and the pages keep the same Content-Security-Policy as the UI."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from playwright.async_api import Browser, ConsoleMessage, Page, Route, expect

from tracer.db import create_db_engine, upgrade_database
from tracer.devserver import free_port
from tracer.store import Store
from web import create_app

from .conftest import UiServer, _serve

# Recorded by the page itself: CSP violations that did not make it to the console.
CSP_LISTENER = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", (e) => {
  window.__cspViolations.push(e.violatedDirective + " " + e.blockedURI);
});
"""


@pytest.fixture(scope="module")
async def docs_ui(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[UiServer]:
    """The UI over an empty store: the API docs do not depend on data."""
    engine = create_db_engine(f"sqlite:///{tmp_path_factory.mktemp('docs') / 'tracer.db'}")
    upgrade_database(engine)
    store = Store(engine)
    port = free_port()
    server, task = await _serve(create_app(store), port)
    try:
        yield UiServer(f"http://127.0.0.1:{port}", store)
    finally:
        server.should_exit = True
        await task
        engine.dispose()


async def _offline_page(browser: Browser, server_url: str) -> tuple[Page, list[str], list[str]]:
    """A page that can reach only ``server_url``; returns it with the requests it was
    refused and its console errors and warnings."""
    context = await browser.new_context(viewport={"width": 1440, "height": 900})
    own = urlsplit(server_url).netloc
    refused: list[str] = []
    console: list[str] = []

    async def only_own_server(route: Route) -> None:
        url = route.request.url
        if urlsplit(url).netloc == own or url.startswith("data:"):
            await route.continue_()
        else:
            refused.append(url)
            await route.abort()

    await context.route("**/*", only_own_server)
    await context.add_init_script(CSP_LISTENER)
    page = await context.new_page()
    page.set_default_timeout(15_000)

    def on_console(message: ConsoleMessage) -> None:
        if message.type in ("error", "warning"):
            console.append(f"{message.type}: {message.text}")

    page.on("console", on_console)
    page.on("pageerror", lambda err: console.append(f"pageerror: {err}"))
    return page, refused, console


def _operations(spec: dict[str, object]) -> list[tuple[str, str]]:
    paths = spec["paths"]
    assert isinstance(paths, dict)
    return [
        (method, path)
        for path, methods in paths.items()
        for method in methods
        if method in ("get", "post", "put", "patch", "delete")
    ]


async def _check_page(docs_ui: UiServer, path: str) -> list[tuple[str, str]]:
    """Check the page's CSP and URLs; return the API's operations."""
    # The UI server runs in this event loop: ask it asynchronously.
    async with httpx.AsyncClient(base_url=docs_ui.url) as http:
        response = await http.get(path)
        spec = (await http.get("/openapi.json")).json()
    assert response.status_code == 200
    csp = response.headers["content-security-policy"]
    assert "default-src 'self'" in csp and "script-src" not in csp  # scripts: 'self' only
    assert "unsafe-eval" not in csp
    # No external URL anywhere in the page.
    assert not re.search(r"""(?:src|href|url)\s*=\s*["']?(?:https?:)?//""", response.text)
    assert "<script>" not in response.text  # no inline script for the CSP to refuse
    return _operations(spec)


async def test_swagger_ui_renders_every_operation_offline(
    browser: Browser, docs_ui: UiServer, shots: Path
) -> None:
    operations = await _check_page(docs_ui, "/docs")
    assert len(operations) >= 5
    page, refused, console = await _offline_page(browser, docs_ui.url)
    try:
        await page.goto(f"{docs_ui.url}/docs")
        blocks = page.locator(".swagger-ui .opblock")
        await expect(blocks).to_have_count(len(operations))
        await expect(page.locator(".swagger-ui .info .title")).to_contain_text("temporal-tracer")
        tree = page.locator(".opblock-summary-path", has_text="/tree")
        await expect(tree.first).to_be_visible()
        # An operation opens and its "Try it out" runs against this server.
        await page.locator(".opblock-summary", has_text="/healthz").first.click()
        await page.get_by_role("button", name="Try it out").click()
        await page.get_by_role("button", name="Execute").click()
        status = page.locator(".live-responses-table tbody .response-col_status").first
        await expect(status).to_have_text("200")
        await page.screenshot(path=shots / "api-docs.png", full_page=False)
        violations = await page.evaluate("window.__cspViolations")
    finally:
        await page.context.close()
    assert violations == []
    assert refused == []
    assert console == []


async def test_redoc_renders_every_operation_offline(
    browser: Browser, docs_ui: UiServer, shots: Path
) -> None:
    operations = await _check_page(docs_ui, "/redoc")
    page, refused, console = await _offline_page(browser, docs_ui.url)
    try:
        await page.goto(f"{docs_ui.url}/redoc")
        await expect(page.locator("[data-section-id^='operation/']")).to_have_count(len(operations))
        await page.screenshot(path=shots / "api-redoc.png", full_page=False)
        violations = await page.evaluate("window.__cspViolations")
    finally:
        await page.context.close()
    assert violations == []
    assert refused == []
    assert console == []
