"""The UI in a real browser (Debian's Chromium through Playwright) on the linked sample:
what an on-call engineer sees and clicks."""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import httpx
from playwright.async_api import Page, expect

from tests.conftest import LinkedSample

from .conftest import ADMIN_TOKEN, EVIL, PAYMENTS_TOKEN, TEMPORAL_UI, UiServer


def _nodes(node: dict[str, Any]) -> list[dict[str, Any]]:
    return [node, *(n for child in node["children"] for n in _nodes(child))]


def _tag(sample: LinkedSample) -> str:
    """A prefix search (``order-<tag>-*``) for this session's four orders."""
    return sample.order_ids["ok"].removesuffix("ok") + "*"


def row(page: Page, kind: str, name: str) -> Any:
    """The waterfall row of the first node of ``kind`` whose name ends with ``name``."""
    return (
        page.locator(f".node[data-kind='{kind}']")
        .filter(has=page.locator(".row .name", has_text=re.compile(re.escape(name) + "$")))
        .first.locator(":scope > .row")
    )


async def test_tree_page_waterfall_lanes_and_badges(
    page: Page, ui: UiServer, linked_sample: LinkedSample, shots: Path
) -> None:
    order = linked_sample.order_ids["ok"]
    tree = await linked_sample.tree("orders", order)
    await page.goto(f"{ui.url}/workflows/orders/{order}")
    await expect(page.locator("h1")).to_contain_text("OrderWorkflow")
    # One row per node of the contract's tree, every namespace in the legend.
    await expect(page.locator(".waterfall .row")).to_have_count(len(_nodes(tree)))
    legend = page.locator(".summary .legend .ns")
    await expect(legend).to_have_text(["inventory", "notifications", "orders", "payments"])
    # Link badges: the Nexus handler workflow and the workflow an activity wrapper started.
    payment = page.locator(".node[data-kind='workflow'][data-namespace='payments']").first
    await expect(payment.locator(":scope > .row .badge.link-nexus")).to_have_text("Nexus")
    stock = page.locator(".node[data-kind='workflow'][data-namespace='inventory']").first
    await expect(stock.locator(":scope > .row .badge.link-activity_wrapper")).to_be_visible()
    # Links that rest only on an unsigned claim say so, and only those.
    unverified = [n for n in _nodes(tree) if not n["verified"]]
    await expect(page.locator(".badge.unverified")).to_have_count(len(unverified))
    # Waterfall: a called workflow's bar lies inside its caller's bar.
    outer = await row(page, "nexus_operation", "process_payment").locator(".bar").bounding_box()
    inner = await payment.locator(":scope > .row .bar").bounding_box()
    assert outer and inner
    assert (
        outer["x"] - 1 <= inner["x"]
        and inner["x"] + inner["width"] <= outer["x"] + outer["width"] + 1
    )
    # Each workflow links to its Temporal Web UI history page.
    link = payment.locator(":scope > .row a.temporal-ui")
    href = await link.get_attribute("href")
    assert href is not None and href.startswith(f"{TEMPORAL_UI}/namespaces/payments/workflows/")
    await page.screenshot(path=shots / "tree-ok.png", full_page=True)


async def test_collapse_and_expand(page: Page, ui: UiServer, linked_sample: LinkedSample) -> None:
    await page.goto(f"{ui.url}/workflows/orders/{linked_sample.order_ids['ok']}")
    call = (
        page.locator(".node[data-kind='nexus_operation']")
        .filter(has=page.locator(".name", has_text=re.compile("process_payment$")))
        .first
    )
    handler = call.locator(":scope > .children > .node > .row").first
    await expect(handler).to_be_visible()
    await call.locator(":scope > .row .toggle").click()
    await expect(handler).to_be_hidden()
    await expect(call).to_have_attribute("aria-expanded", "false")
    await call.locator(":scope > .row .toggle").click()
    await expect(handler).to_be_visible()
    # Collapse all leaves only the root's calls; expand all shows every row again.
    await page.get_by_role("button", name="Collapse all").click()
    await expect(page.locator(".waterfall .row:visible")).to_have_count(
        1 + await page.locator("#n0 > .children > .node").count()
    )
    await page.get_by_role("button", name="Expand all").click()
    await expect(page.locator(".waterfall .row:visible")).to_have_count(
        await page.locator(".waterfall .row").count()
    )


async def test_node_detail_panel(
    page: Page, ui: UiServer, linked_sample: LinkedSample, shots: Path
) -> None:
    order = linked_sample.order_ids["ok"]
    tree = await linked_sample.tree("orders", order)
    payment = next(
        n for n in _nodes(tree) if n["kind"] == "workflow" and n["namespace"] == "payments"
    )
    await page.goto(f"{ui.url}/workflows/orders/{order}")
    panel = page.locator("#detail")
    await expect(panel).to_be_hidden()
    await page.locator(".node[data-kind='workflow'][data-namespace='payments'] > .row").click()
    await expect(panel).to_be_visible()
    await expect(panel.locator("h2")).to_have_text("ProcessPaymentWorkflow")
    await expect(panel.locator("dl.facts")).to_contain_text(payment["workflow_id"])
    await expect(panel.locator("dl.facts")).to_contain_text(payment["run_id"])
    await expect(panel.locator("dl.facts")).to_contain_text("payments-tq")
    await expect(panel.locator(".history")).to_contain_text("Pending calls: none")
    await expect(panel.locator(".spans")).to_be_visible()
    ui_link = panel.get_by_role("link", name=re.compile("Temporal Web UI"))
    assert await ui_link.get_attribute("href") == (
        f"{TEMPORAL_UI}/namespaces/payments/workflows/{payment['workflow_id']}/"
        f"{payment['run_id']}/history"
    )
    # The selection is in the URL, so the view can be shared.
    assert re.search(r"#n\d+$", page.url)
    await page.screenshot(path=shots / "tree-detail.png", full_page=True)
    # A Nexus call shows its endpoint, operation and request id.
    await row(page, "nexus_operation", "get_quote").click()
    await expect(panel.locator("dl.facts")).to_contain_text("payments-endpoint")
    await expect(panel.locator("dl.facts")).to_contain_text("get_quote")
    await expect(panel.locator("dl.facts")).to_contain_text("Request id")


async def test_error_path_of_the_declined_order(
    page: Page, ui: UiServer, linked_sample: LinkedSample, shots: Path
) -> None:
    await page.goto(f"{ui.url}/workflows/orders/{linked_sample.order_ids['declined']}")
    await expect(page.locator(".summary .error-count")).to_have_text("1 error")
    await expect(page.locator(".error-list")).to_contain_text("CardDeclined")
    # Every node from the root to the declined charge is open and marked.
    origin = page.locator(".node.error-origin")
    await expect(origin).to_have_count(1)
    await expect(origin.locator(":scope > .row .name")).to_have_text("charge_card")
    await expect(origin.locator(":scope > .row")).to_be_visible()
    path_names = await page.locator(".node.on-error-path > .row .name").all_text_contents()
    assert path_names[0] == "OrderWorkflow"
    assert path_names[1].endswith("process_payment")
    assert path_names[2] == "ProcessPaymentWorkflow"
    # Collapsed or not, "Next error" opens the path and shows the failure.
    await page.get_by_role("button", name="Collapse all").click()
    await expect(origin.locator(":scope > .row")).to_be_hidden()
    await page.get_by_role("button", name="Next error").click()
    await expect(origin.locator(":scope > .row")).to_be_visible()
    await expect(origin).to_have_class(re.compile(r"\bselected\b"))
    panel = page.locator("#detail")
    await expect(panel.locator(".detail-error")).to_contain_text("CardDeclined")
    await expect(panel.locator(".detail-error")).to_contain_text("card 0000-0000 was declined")
    # The failed cross-namespace call carries a diagnosis that points at the handler.
    await row(page, "nexus_operation", "process_payment").click()
    diagnosis = panel.locator(".diagnosis")
    # A declined card is an answer the handler gave on purpose, not a breakage.
    await expect(diagnosis.locator("h3")).to_have_text("⚑ Diagnosis: Business failure")
    await expect(diagnosis).to_contain_text("non-retryable application error")
    await expect(diagnosis).to_contain_text(
        "activity charge_card in payments: CardDeclined: card 0000-0000 was declined"
    )
    await expect(panel.locator("dl.facts")).to_contain_text("business")
    # The handler's history is a place to look, marked as a link, not as an unknown.
    history = diagnosis.locator("li.check", has_text="Handler history")
    await expect(history).to_have_class(re.compile(r"\bverdict-link\b"))
    await expect(history.get_by_role("link", name=re.compile("history"))).to_have_attribute(
        "href", re.compile(re.escape(f"{TEMPORAL_UI}/namespaces/payments/workflows/payment-"))
    )
    # Temporal answers live: the payments worker polls its task queue.
    await expect(diagnosis.locator(".live-check")).to_have_class(re.compile("verdict-ok"))
    await expect(diagnosis.locator(".live-check")).to_contain_text("workflow poller")
    await page.screenshot(path=shots / "tree-declined.png", full_page=True)


async def test_timeout_diagnosis(page: Page, ui: UiServer, linked_sample: LinkedSample) -> None:
    await page.goto(f"{ui.url}/workflows/orders/{linked_sample.order_ids['slow']}")
    call = row(page, "nexus_operation", "process_payment")
    await expect(call.locator(".sicon")).to_have_attribute("title", "timed out")
    await call.click()
    diagnosis = page.locator("#detail .diagnosis")
    await expect(diagnosis.locator("h3")).to_have_text("◷ Diagnosis: Timeout")
    await expect(diagnosis).to_contain_text("Is the handler workflow stuck?")
    await expect(diagnosis.locator(".live-check")).to_contain_text("poller")


async def test_gaps_say_what_they_waited_on(
    page: Page, ui: UiServer, linked_sample: LinkedSample, shots: Path
) -> None:
    # The slow bank's payment sleeps 20 s between two activities: its lane says so.
    await page.goto(f"{ui.url}/workflows/orders/{linked_sample.order_ids['slow']}")
    handler = page.locator(".node[data-kind='workflow'] > .row").filter(
        has=page.locator(".name", has_text="ProcessPaymentWorkflow")
    )
    gap = handler.locator(".bar > .gap")
    await expect(gap).to_have_text("timer 20 s")
    box, bar = await gap.bounding_box(), await handler.locator(".bar").bounding_box()
    assert box is not None and bar is not None
    assert box["width"] > bar["width"] * 0.5  # most of the handler's time (so far)
    await page.locator("main").screenshot(path=shots / "gap.png")


async def test_search_filters_pages_and_opens_a_tree(
    page: Page, ui: UiServer, linked_sample: LinkedSample, shots: Path
) -> None:
    tag = _tag(linked_sample)
    await page.goto(ui.url + "/")
    await page.get_by_label("Workflow id").fill(tag)
    await page.get_by_label("Status").select_option("failed")
    await page.get_by_role("button", name="Search").click()
    query = parse_qs(urlparse(page.url).query)
    assert query["workflow_id"] == [tag] and query["status"] == ["failed"]
    rows = page.locator("tr.trace")
    await expect(rows).to_have_count(2)
    declined = rows.filter(has_text=linked_sample.order_ids["declined"])
    await expect(declined.locator("td.chips .ns")).to_have_text(["orders", "payments"])
    await expect(declined.locator(".first-error")).to_contain_text("CardDeclined")
    await expect(declined.locator("td.errors")).not_to_have_text("0")
    await page.screenshot(path=shots / "search.png", full_page=True)
    # A handler's id finds the tree it belongs to, rooted at the order.
    await page.goto(f"{ui.url}/?workflow_id=payment-{linked_sample.order_ids['ok']}")
    await expect(rows).to_have_count(1)
    await expect(rows.first.locator(".wid")).to_have_text(linked_sample.order_ids["ok"])
    await expect(rows.first.locator("td.chips .ns")).to_have_count(4)
    # Pagination keeps the filters in the URL.
    await page.goto(f"{ui.url}/?workflow_id={tag}&page_size=2")
    await expect(page.locator(".result-count")).to_have_text("4 trees, page 1 of 2")
    first_page = await rows.locator(".wid").all_text_contents()
    await page.get_by_role("link", name="Older").click()
    await expect(page.locator(".result-count")).to_have_text("4 trees, page 2 of 2")
    assert parse_qs(urlparse(page.url).query)["workflow_id"] == [tag]
    second_page = await rows.locator(".wid").all_text_contents()
    assert sorted(first_page + second_page) == sorted(linked_sample.order_ids.values())
    # A row opens its tree.
    await rows.first.locator("a.root-link").click()
    await expect(page.locator(".waterfall")).to_be_visible()
    await expect(page.locator("h1")).to_contain_text("OrderWorkflow")


async def test_traces_api(ui: UiServer, linked_sample: LinkedSample) -> None:
    tag = _tag(linked_sample)
    async with httpx.AsyncClient(base_url=ui.url) as client:
        response = await client.get("/api/traces", params={"workflow_id": tag, "page_size": 3})
        assert response.status_code == 200
        body = response.json()
        assert (body["total"], body["pages"], len(body["traces"])) == (4, 2, 3)
        second = (
            await client.get("/api/traces", params={"workflow_id": tag, "page_size": 3, "page": 2})
        ).json()
        ids = {t["workflow_id"] for t in body["traces"] + second["traces"]}
        assert ids == set(linked_sample.order_ids.values())
        slow = (
            await client.get("/api/traces", params={"workflow_id": tag, "min_duration": 2.5})
        ).json()
        assert linked_sample.order_ids["slow"] in {t["workflow_id"] for t in slow["traces"]}
        declined = next(
            t
            for t in body["traces"] + second["traces"]
            if t["workflow_id"] == linked_sample.order_ids["declined"]
        )
        assert declined["namespaces"] == ["orders", "payments"]
        assert declined["status"] == "failed" and declined["error_count"] >= 1
        assert declined["first_error"]["type"] == "CardDeclined"
        bad = await client.get("/api/traces", params={"status": "nope"})
        assert bad.status_code == 400


async def test_namespace_map(page: Page, ui: UiServer, shots: Path) -> None:
    await page.goto(f"{ui.url}/map?window=1h")
    svg = page.locator("figure.map svg")
    # The sample's namespaces (other tests on the same server may add their own).
    for namespace in ("orders", "payments", "inventory", "notifications"):
        await expect(svg.locator(f".ns-node[data-namespace='{namespace}']")).to_have_count(1)
    edge = svg.locator(".edge[data-caller='orders'][data-callee='payments']")
    await expect(edge).to_have_count(1)
    # The sample's failed payments make this edge an erroring one.
    await expect(edge).to_have_class(re.compile("edge-error"))
    await expect(edge.locator(".edge-label")).to_contain_text("calls")
    await expect(edge.locator(".edge-label")).to_contain_text("p95")
    table_row = page.locator("tr.edge-row[data-caller='orders'][data-callee='inventory']")
    await expect(table_row).to_contain_text("activity wrapper")
    await page.screenshot(path=shots / "map.png", full_page=True)
    async with httpx.AsyncClient(base_url=ui.url) as client:
        edges = (await client.get("/api/map", params={"window": "1h"})).json()["edges"]
    payments = next(e for e in edges if (e["caller"], e["callee"]) == ("orders", "payments"))
    assert payments["calls"] >= 8 and payments["errors"] >= 2 and payments["p95_ms"] > 0


async def test_restricted_view(
    page: Page, locked_ui: UiServer, linked_sample: LinkedSample, shots: Path
) -> None:
    order = linked_sample.order_ids["declined"]
    async with httpx.AsyncClient(base_url=locked_ui.url) as client:
        assert (await client.get(f"/api/workflows/orders/{order}/tree")).status_code == 401
        assert (await client.get("/healthz")).status_code == 200
        bearer = {"Authorization": f"Bearer {PAYMENTS_TOKEN}"}
        hidden = await client.get(f"/api/workflows/orders/{order}/tree", headers=bearer)
        assert hidden.status_code == 404
        seen = await client.get(f"/api/workflows/payments/payment-{order}/tree", headers=bearer)
        root = seen.json()["root"]
        assert root["namespace"] == "orders" and root["workflow_id"] is None
        assert root["error"] is None and root["name"] == "OrderWorkflow"
        assert root["status"] == "failed" and root["start_time"]
        payment = next(n for n in _nodes(root) if n["namespace"] == "payments" and n["run_id"])
        assert payment["workflow_id"] == f"payment-{order}"
        admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        full = await client.get(f"/api/workflows/orders/{order}/tree", headers=admin)
        assert full.json()["root"]["workflow_id"] == order
    # In the browser: the login form, then full detail in payments and structure elsewhere.
    await page.goto(f"{locked_ui.url}/workflows/payments/payment-{order}")
    await expect(page).to_have_url(re.compile(r"/login\?next="))
    await page.get_by_label("Access token").fill("wrong")
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.get_by_role("alert")).to_have_text("That token is not valid.")
    await page.get_by_label("Access token").fill(PAYMENTS_TOKEN)
    await page.get_by_role("button", name="Sign in").click()
    await expect(page).to_have_url(re.compile(re.escape(f"/workflows/payments/payment-{order}")))
    await expect(page.locator("header.top .viewer")).to_contain_text("payments-oncall")
    root_row = page.locator("#n0 > .row")
    await expect(root_row.locator(".name")).to_have_text("OrderWorkflow")
    await expect(root_row.locator(".badge.restricted")).to_be_visible()
    await expect(root_row.locator(".sicon")).to_have_attribute("title", "failed")
    assert order not in (await page.locator("main").inner_text()).replace(f"payment-{order}", "")
    await root_row.click()
    await expect(page.locator("#detail .restricted-note")).to_be_visible()
    await expect(page.locator("#detail .detail-error")).to_have_count(0)
    await page.locator(".node[data-kind='activity'][data-status='failed'] > .row").click()
    await expect(page.locator("#detail .detail-error")).to_contain_text("CardDeclined")
    await page.screenshot(path=shots / "tree-restricted.png", full_page=True)
    # An id only orders holds finds nothing for this viewer: search is not an oracle.
    await page.goto(f"{locked_ui.url}/?workflow_id={_tag(linked_sample)}")
    await expect(page.locator(".result-count")).to_contain_text("0 trees")
    # Its own payment ids list their trees, without the orders' ids.
    await page.goto(f"{locked_ui.url}/?workflow_id=payment-{_tag(linked_sample)}")
    await expect(page.locator("tr.trace")).to_have_count(4)
    assert order not in await page.locator("table.traces").inner_text()
    # The failure happened in payments, so this viewer sees it on the row.
    first_errors = page.locator("tr.trace .first-error")
    await expect(first_errors.filter(has_text="CardDeclined")).to_have_count(1)
    async with httpx.AsyncClient(base_url=locked_ui.url) as client:
        listed = await client.get(
            "/api/traces",
            params={"workflow_id": f"payment-{_tag(linked_sample)}"},
            headers={"Authorization": f"Bearer {PAYMENTS_TOKEN}"},
        )
    rows = listed.json()["traces"]
    assert len(rows) == 4 and all(r["workflow_id"] is None for r in rows)
    assert {r["first_error"]["type"] for r in rows if r["first_error"]} == {"CardDeclined"}
    response = await page.goto(f"{locked_ui.url}/workflows/orders/{order}")
    assert response is not None and response.status == 404


async def test_hostile_names_are_shown_as_text(
    page: Page, hostile_ui: UiServer, shots: Path
) -> None:
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: dialogs.append(dialog.message))
    await page.goto(f"{hostile_ui.url}/")
    await expect(page.locator("tr.trace .wid")).to_have_text(EVIL)
    await page.locator("tr.trace a.root-link").click()
    await expect(page.locator("h1 small")).to_have_text(EVIL)
    await expect(page.locator("#n0 > .row .name")).to_have_text("<b>Bold</b>Workflow")
    await expect(page.locator(".err-line")).to_contain_text("</template><script>alert(4)</script>")
    await page.locator("#n0 > .row").click()
    panel = page.locator("#detail")
    await expect(panel.locator(".detail-error")).to_contain_text("<img src=x onerror=alert(2)>")
    await expect(panel.locator(".spans")).to_contain_text("<img src=y onerror=alert(5)>")
    await page.locator(".node[data-kind='activity'] > .row").click()
    await expect(panel.locator("h2")).to_have_text("<svg onload=alert(3)>")
    # No markup from the data became an element, and no script ran.
    assert await page.locator("main script, main b, main i, main img, main svg").count() == 0
    assert dialogs == []
    await page.screenshot(path=shots / "escaping.png", full_page=True)


async def test_span_attributes_in_node_detail(
    page: Page, ui: UiServer, linked_sample: LinkedSample, shots: Path
) -> None:
    """Spans sent over OTLP/JSON to the receiver join their nodes by namespace, workflow id
    and run id, and by Nexus request id."""
    from tracer.ingest import create_receiver_app

    order = linked_sample.order_ids["ok"]
    tree = await linked_sample.tree("orders", order)
    payment = next(
        n for n in _nodes(tree) if n["kind"] == "workflow" and n["namespace"] == "payments"
    )
    quote = next(n for n in _nodes(tree) if n["name"].endswith("/get_quote"))

    def attrs(**values: str) -> list[dict[str, Any]]:
        return [{"key": k, "value": {"stringValue": v}} for k, v in values.items()]

    now = 1_800_000_000_000_000_000
    # The caller's start span opens while its workflow task runs, a moment before the
    # server records the call, and carries no request id.
    called = datetime.fromisoformat(quote["start_time"].replace("Z", "+00:00"))
    called_ns = int(called.timestamp() * 1e9) - 4_000_000
    body = {
        "resourceSpans": [
            {
                "resource": {"attributes": attrs(**{"service.name": "payments-worker"})},
                "scopeSpans": [
                    {
                        "spans": [
                            {
                                "traceId": "ab" * 16,
                                "spanId": "01" * 8,
                                "name": "RunWorkflow:ProcessPaymentWorkflow",
                                "startTimeUnixNano": str(now),
                                "endTimeUnixNano": str(now + 5_000_000),
                                "attributes": attrs(
                                    **{
                                        "temporal.namespace": "payments",
                                        "temporal.workflow_id": payment["workflow_id"],
                                        "temporal.run_id": payment["run_id"],
                                        "temporal.caller.namespace": "orders",
                                    }
                                ),
                            },
                            {
                                "traceId": "ab" * 16,
                                "spanId": "03" * 8,
                                "name": "StartNexusOperation:PaymentsService/get_quote",
                                "startTimeUnixNano": str(called_ns),
                                "endTimeUnixNano": str(called_ns + 2_000_000),
                                "attributes": attrs(
                                    **{
                                        "temporal.namespace": "orders",
                                        "temporal.workflow_id": order,
                                        "temporal.run_id": tree["run_id"],
                                    }
                                ),
                            },
                            {
                                "traceId": "ab" * 16,
                                "spanId": "02" * 8,
                                "name": "RunStartNexusOperationHandler:PaymentsService/get_quote",
                                "startTimeUnixNano": str(now),
                                "endTimeUnixNano": str(now + 1_000_000),
                                "attributes": attrs(
                                    **{
                                        "temporal.namespace": "payments",
                                        "temporal.nexus.request_id": quote["details"]["request_id"],
                                    }
                                ),
                            },
                        ]
                    }
                ],
            }
        ]
    }
    receiver = create_receiver_app(ui.store)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=receiver), base_url="http://otlp"
    ) as otlp:
        response = await otlp.post("/v1/traces", json=body)
        assert response.status_code == 200, response.text
    await page.goto(f"{ui.url}/workflows/orders/{order}")
    await page.locator(".node[data-kind='workflow'][data-namespace='payments'] > .row").click()
    spans = page.locator("#detail .spans")
    await expect(spans.locator("summary")).to_contain_text("RunWorkflow:ProcessPaymentWorkflow")
    await expect(spans.locator("summary")).to_contain_text("payments-worker")
    await expect(spans.locator("table.attrs")).to_contain_text("temporal.caller.namespace")
    await expect(spans.locator("table.attrs")).to_contain_text(payment["run_id"])
    await page.locator(".node[data-kind='nexus_handler'] > .row").first.click()
    await expect(spans.locator("summary")).to_contain_text("RunStartNexusOperationHandler")
    # The caller's start span belongs to the Nexus call it started, not to the caller.
    start_span = "StartNexusOperation:PaymentsService/get_quote"
    await row(page, "nexus_operation", "get_quote").click()
    await expect(spans.locator("summary")).to_contain_text([start_span])
    await page.locator("#n0 > .row").click()
    await expect(page.locator("#detail h2")).to_have_text("OrderWorkflow")
    await expect(spans).not_to_contain_text(start_span)
    await page.screenshot(path=shots / "tree-spans.png", full_page=True)


async def test_figures_agree_between_search_the_tree_page_and_the_api(
    page: Page, ui: UiServer, linked_sample: LinkedSample
) -> None:
    """The slow order's caller gave up at 3 s while its handler ran on: both durations are
    shown, each labeled, and the declined order counts one error everywhere."""
    slow, declined = linked_sample.order_ids["slow"], linked_sample.order_ids["declined"]
    async with httpx.AsyncClient(base_url=ui.url) as client:
        tree = (await client.get(f"/api/workflows/orders/{slow}/tree")).json()["summary"]
        [row_json] = (await client.get("/api/traces", params={"workflow_id": slow})).json()[
            "traces"
        ]
        failed = (await client.get(f"/api/workflows/orders/{declined}/tree")).json()["summary"]
    assert tree["tree_duration_ms"] > tree["caller_duration_ms"] * 1.5
    for name in ("node_count", "error_count", "namespaces"):
        assert row_json[name] == tree[name]
    assert failed["error_count"] == 1 and failed["first_error"]["type"] == "CardDeclined"
    await page.goto(f"{ui.url}/workflows/orders/{slow}")
    durations = page.locator(".tree-head .durations")
    await expect(durations).to_contain_text("caller")
    await expect(durations).to_contain_text("tree")
    await page.goto(f"{ui.url}/workflows/orders/{declined}")
    await expect(page.locator(".tree-head .error-count")).to_have_text("1 error")
    await page.goto(f"{ui.url}/?workflow_id={declined}")
    await expect(page.locator("tr.trace td.errors")).to_have_text("1")
