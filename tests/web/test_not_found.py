"""Unknown workflows, namespaces and pages: an HTML page with search at hand for people,
JSON for programs."""

from __future__ import annotations

import httpx
from playwright.async_api import Page, expect

from tests.conftest import LinkedSample

from .conftest import UiServer

BROWSER = {"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}


async def test_unknown_workflow_in_a_browser(page: Page, ui: UiServer) -> None:
    response = await page.goto(f"{ui.url}/workflows/orders/no-such-order")
    assert response is not None and response.status == 404
    await expect(page.locator("h1")).to_have_text("Not found")
    await expect(page.locator(".lead")).to_contain_text("No workflow no-such-order")
    await expect(page.locator(".lead")).to_contain_text("orders")
    # Search is at hand, filled in with what was asked for.
    search = page.get_by_role("search")
    await expect(search.get_by_label("Workflow id")).to_have_value("no-such-order")
    await search.get_by_label("Workflow id").fill("order-*")
    await search.get_by_role("button", name="Search").click()
    await expect(page.locator("h1")).to_have_text("Call trees")


async def test_unknown_namespace_and_page(ui: UiServer) -> None:
    async with httpx.AsyncClient(base_url=ui.url, headers=BROWSER) as client:
        namespace = await client.get("/workflows/nowhere/order-1")
        assert namespace.status_code == 404
        assert namespace.headers["content-type"].startswith("text/html")
        assert "No namespace <strong" in namespace.text and "nowhere" in namespace.text
        assert '/?namespace=payments">payments</a>' in namespace.text
        missing = await client.get("/no/such/page")
        assert missing.status_code == 404
        assert "There is no page at this address." in missing.text
        assert 'role="search"' in missing.text


async def test_programs_keep_json(ui: UiServer, linked_sample: LinkedSample) -> None:
    async with httpx.AsyncClient(base_url=ui.url) as client:
        api = await client.get("/api/workflows/orders/no-such-order/tree", headers=BROWSER)
        assert api.status_code == 404
        assert "no-such-order" in api.json()["detail"]
        asked = await client.get(
            "/workflows/orders/no-such-order", headers={"Accept": "application/json"}
        )
        assert asked.status_code == 404
        assert "no-such-order" in asked.json()["detail"]
        node = await client.get(
            f"/api/workflows/orders/{linked_sample.order_ids['ok']}/nodes/99999", headers=BROWSER
        )
        assert node.status_code == 404 and node.json()["detail"]
