"""Every node of a call tree that is a run links to that run's history in the Temporal Web
UI: its own namespace, workflow id and run id (the demo's test opens such links in a real
Temporal UI)."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import httpx
import pytest
from playwright.async_api import Page

from tests.conftest import LinkedSample

from .conftest import TEMPORAL_UI, UiServer


def _nodes(node: dict[str, Any]) -> list[dict[str, Any]]:
    return [node, *(n for child in node["children"] for n in _nodes(child))]


def _history_url(node: dict[str, Any]) -> str | None:
    if not (node["workflow_id"] and node["run_id"]):
        return None
    return (
        f"{TEMPORAL_UI}/namespaces/{quote(node['namespace'], safe='')}/workflows/"
        f"{quote(node['workflow_id'], safe='')}/{quote(node['run_id'], safe='')}/history"
    )


@pytest.mark.parametrize("scenario", ["ok", "poll", "declined", "slow"])
async def test_each_run_links_to_its_own_history(
    page: Page, ui: UiServer, linked_sample: LinkedSample, scenario: str
) -> None:
    order = linked_sample.order_ids[scenario]
    nodes = _nodes(await linked_sample.tree("orders", order))
    await page.goto(f"{ui.url}/workflows/orders/{order}")
    # Rows in document order are the tree in pre-order, as the API lists it.
    rows = await page.eval_on_selector_all(
        ".waterfall .node",
        """nodes => nodes.map(n => [
            n.dataset.kind,
            n.dataset.namespace,
            n.querySelector(':scope > .row a.temporal-ui')?.getAttribute('href') ?? null,
        ])""",
    )
    assert [(kind, ns) for kind, ns, _ in rows] == [(n["kind"], n["namespace"]) for n in nodes]
    assert [href for _, _, href in rows] == [_history_url(n) for n in nodes]
    if scenario == "ok":  # its tree reaches every sample namespace: each run links to its own
        linked = {n["namespace"] for n in nodes if _history_url(n)}
        assert linked == {"orders", "payments", "notifications", "inventory"}, linked
    # The detail panel's link (loaded on demand from the page's detail URL) is the row's.
    detail_url = await page.locator(".waterfall").get_attribute("data-detail")
    assert detail_url is not None
    async with httpx.AsyncClient(base_url=ui.url) as client:
        for index, node in enumerate(nodes):
            expected = _history_url(node)
            if expected is None:
                continue
            answer = (await client.get(detail_url.replace("{n}", str(index)))).json()
            assert answer["node"]["history_url"] == expected
            assert f'href="{expected}"' in answer["html"].replace("&amp;", "&")
