"""Who sees what, on every route, for three viewers: none (no token), an ``orders``-only
token and an admin token, over real HTTP with a real tokens file and a real SQLite store.

The orders-only viewer must never receive anything only ``payments`` or ``inventory``
holds (``HIDDEN_MARKERS``), on any route, while the admin sees all of it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from .conftest import ADMIN_TOKEN, HIDDEN_MARKERS, ORDERS_TOKEN, PAY_TOKEN, VISIBLE_MARKER, Site


def routes(app: FastAPI) -> set[tuple[str, str]]:
    """Every ``(method, path)`` the app serves, included routers and all."""
    found: set[tuple[str, str]] = set()
    for route in app.routes:
        inner = route.original_router.routes if hasattr(route, "original_router") else [route]
        for item in inner:
            for method in getattr(item, "methods", None) or ():
                if method != "HEAD":
                    found.add((method, item.path))
    return found


# One request per route, reaching the data where the route has any.
REQUESTS: dict[tuple[str, str], list[tuple[str, str]]] = {
    ("GET", "/healthz"): [("GET", "/healthz")],
    ("GET", "/readyz"): [("GET", "/readyz")],
    ("GET", "/api/namespaces"): [("GET", "/api/namespaces")],
    ("GET", "/api/workflows/{namespace}/{workflow_id:path}/tree"): [
        ("GET", "/api/workflows/orders/order-1/tree"),
        ("GET", "/api/workflows/orders/order-2/tree"),
    ],
    ("GET", "/api/workflows/{namespace}/{workflow_id:path}/nodes/{index}"): [
        ("GET", f"/api/workflows/orders/order-1/nodes/{index}") for index in range(9)
    ],
    ("GET", "/api/nexus-operations/{namespace}/{operation_id:path}/tree"): [
        ("GET", "/api/nexus-operations/payments/quote-op-1/tree"),
    ],
    ("GET", "/api/nexus-operations/{namespace}/{operation_id:path}/nodes/{index}"): [
        ("GET", f"/api/nexus-operations/payments/quote-op-1/nodes/{index}") for index in range(2)
    ],
    ("GET", "/nexus-operations/{namespace}/{operation_id:path}"): [
        ("GET", "/nexus-operations/payments/quote-op-1"),
    ],
    ("GET", "/api/traces"): [
        ("GET", "/api/traces"),
        ("GET", "/api/traces?workflow_id=order-1"),
        ("GET", "/api/traces?kind=nexus_operation"),
    ],
    ("GET", "/api/map"): [("GET", "/api/map?window=30d")],
    ("GET", "/api/diagnosis"): [("GET", "/api/diagnosis?namespace=nope&task_queue=orders-tq")],
    ("GET", "/"): [("GET", "/"), ("GET", "/?workflow_id=order-1")],
    ("GET", "/workflows/{namespace}/{workflow_id:path}"): [
        ("GET", "/workflows/orders/order-1"),
        ("GET", "/workflows/orders/order-2"),
    ],
    ("GET", "/map"): [("GET", "/map?window=30d")],
    ("GET", "/login"): [("GET", "/login")],
    ("POST", "/login"): [("POST", "/login")],
    ("POST", "/logout"): [("POST", "/logout")],
    ("GET", "/docs"): [("GET", "/docs")],
    ("GET", "/redoc"): [("GET", "/redoc")],
    ("GET", "/openapi.json"): [("GET", "/openapi.json")],
}
PUBLIC = {"/healthz", "/readyz", "/login", "/logout"}


@pytest.fixture(scope="module")
def clients(site: Site) -> Iterator[dict[str, httpx.Client]]:
    """An HTTP client per viewer."""
    made = {
        "none": site.client(),
        "orders": site.client(ORDERS_TOKEN),
        "admin": site.client(ADMIN_TOKEN),
    }
    try:
        yield made
    finally:
        for client in made.values():
            client.close()


def test_every_route_is_covered(site: Site) -> None:
    served = {route for route in routes(site.app) if not route[1].startswith("/static")}
    assert served == set(REQUESTS), "a route was added or removed: cover it here"


@pytest.mark.parametrize("route", sorted(REQUESTS), ids=lambda r: f"{r[0]} {r[1]}")
def test_no_token_reaches_only_public_routes(
    clients: dict[str, httpx.Client], route: tuple[str, str]
) -> None:
    for method, url in REQUESTS[route]:
        response = clients["none"].request(method, url, follow_redirects=False)
        path = url.split("?")[0]
        if path in PUBLIC:
            assert "an access token is required" not in response.text, url
        elif path.startswith(("/api/", "/docs", "/redoc", "/openapi")):
            assert response.status_code == 401, url
            assert response.headers["www-authenticate"] == "Bearer"
        else:
            assert response.status_code == 303, url
            assert response.headers["location"].startswith("/login?next=")
        for marker in (*HIDDEN_MARKERS, VISIBLE_MARKER, "order-1"):
            assert marker not in response.text, (url, marker)


@pytest.mark.parametrize("route", sorted(REQUESTS), ids=lambda r: f"{r[0]} {r[1]}")
def test_scoped_viewer_never_receives_what_only_hidden_namespaces_hold(
    clients: dict[str, httpx.Client], route: tuple[str, str]
) -> None:
    for method, url in REQUESTS[route]:
        response = clients["orders"].request(method, url, follow_redirects=False)
        assert response.status_code < 500, (url, response.text)
        for marker in HIDDEN_MARKERS:
            assert marker not in response.text, (url, marker)


def test_admin_sees_everything_the_scoped_viewer_does_not(
    clients: dict[str, httpx.Client],
) -> None:
    seen = ""
    for requests in REQUESTS.values():
        for method, url in requests:
            response = clients["admin"].request(method, url, follow_redirects=False)
            assert response.status_code < 500, (url, response.text)
            seen += response.text
    seen += clients["admin"].get("/api/workflows/payments/payment-order-1/tree").text
    seen += clients["admin"].get("/api/traces?namespace=payments").text
    for marker in (m for m in HIDDEN_MARKERS if m not in ("payments-tq",)):
        assert marker in seen, marker


def _nodes(node: dict[str, Any]) -> list[dict[str, Any]]:
    return [node, *(n for child in node["children"] for n in _nodes(child))]


def test_tree_keeps_the_structure_of_hidden_nodes(clients: dict[str, httpx.Client]) -> None:
    scoped = clients["orders"].get("/api/workflows/orders/order-1/tree").json()
    full = clients["admin"].get("/api/workflows/orders/order-1/tree").json()
    pairs = list(zip(_nodes(scoped["root"]), _nodes(full["root"]), strict=True))
    for seen, whole in pairs:
        for key in ("kind", "namespace", "name", "status", "start_time", "end_time", "link"):
            assert seen[key] == whole[key]
        if seen["namespace"] == "orders":
            assert (seen["workflow_id"], seen["error"]) == (whole["workflow_id"], whole["error"])
        else:
            assert seen["workflow_id"] is None and seen["run_id"] is None
            assert seen["error"] is None and seen["details"] == {"restricted": True}
    # What the caller's history records stays the caller's: the call's endpoint, operation,
    # request id and outcome. The operation token names the handler: gone.
    call = next(n for _, n in pairs if n["name"].endswith("process_payment"))
    seen_call = next(s for s, n in pairs if n is call)
    assert call["details"]["operation_token"] == PAY_TOKEN
    assert "operation_token" not in seen_call["details"]
    assert seen_call["details"]["request_id"] == "req-pay"
    assert seen_call["error"] == {"type": "NexusOperationFailed", "message": "payment failed"}
    # The first failure happened in payments: the scoped summary does not name it.
    assert full["summary"]["first_error"]["type"] == "CardDeclined"
    assert scoped["summary"]["first_error"] is None
    assert scoped["summary"]["error_count"] == full["summary"]["error_count"] == 1


def _node_details(client: httpx.Client) -> list[dict[str, Any]]:
    answers = []
    for index in range(9):
        answer = client.get(f"/api/workflows/orders/order-1/nodes/{index}")
        if answer.status_code == 404:
            break
        answers.append(answer.json())
    return answers


def _node_detail(client: httpx.Client, name: str, kind: str = "nexus_operation") -> dict[str, Any]:
    for answer in _node_details(client):
        if answer["node"]["name"].endswith(name) and answer["node"]["kind"] == kind:
            return answer
    raise AssertionError(f"no {kind} node named {name}")


def test_span_with_no_namespace_is_shown_only_to_a_viewer_of_its_derived_namespace(
    clients: dict[str, httpx.Client],
) -> None:
    # Before: the get_quote call (orders) showed a span that carries no namespace but the
    # payments handler's request id, with its attributes. Now the span takes the namespace
    # of its call's endpoint (payments) and hangs under the sync handler's node there.
    for answer in _node_details(clients["orders"]):
        assert "PAYMENTS-SECRET-NULL-NAMESPACE" not in json.dumps(answer)
    assert _node_detail(clients["orders"], "get_quote")["node"]["spans"] == []
    handler = _node_detail(clients["admin"], "get_quote", kind="nexus_handler")
    assert handler["node"]["namespace"] == "payments"
    assert [s["attributes"]["ledger"] for s in handler["node"]["spans"]] == [
        "PAYMENTS-SECRET-NULL-NAMESPACE"
    ]
    assert _node_detail(clients["orders"], "get_quote", kind="nexus_handler")["node"]["restricted"]
    # The viewer's own spans are there.
    root = clients["orders"].get("/api/workflows/orders/order-1/nodes/0").json()
    assert [s["attributes"]["note"] for s in root["node"]["spans"]] == [VISIBLE_MARKER]
    assert VISIBLE_MARKER in root["html"]


def test_decoded_operation_token_is_shown_only_with_its_namespace(
    clients: dict[str, httpx.Client],
) -> None:
    scoped = _node_detail(clients["orders"], "process_payment")
    assert scoped["node"]["operation_token"] is None
    assert "Operation token" not in scoped["html"]
    full = _node_detail(clients["admin"], "process_payment")
    assert full["node"]["operation_token"]["wid"] == "payment-order-1"
    assert "payment-order-1" in full["html"]


def test_hidden_node_detail_is_structure_only(clients: dict[str, httpx.Client]) -> None:
    hidden = _node_detail(clients["orders"], "ProcessPaymentWorkflow", kind="workflow")
    assert hidden["node"]["restricted"] is True
    assert hidden["node"]["spans"] == [] and hidden["node"]["error"] is None
    assert "restricted-note" in hidden["html"]
    assert hidden["node"]["status"] == "failed"


@pytest.mark.parametrize(
    ("query", "scoped_total", "admin_total"),
    [
        ("workflow_id=payment-order-1", 0, 1),  # before: 1 for the scoped viewer
        ("workflow_id=payment-order-*", 0, 1),
        ("workflow_type=ReserveStockWorkflow", 0, 1),  # before: 1
        ("workflow_type=ProcessPaymentWorkflow&workflow_id=order-1", 0, 1),
        ("workflow_id=made-up-id", 0, 0),
        ("workflow_id=order-1", 1, 1),
        ("workflow_type=OrderWorkflow", 2, 2),
        ("namespace=payments", 1, 4),  # trees touching payments that also touch orders
        ("", 2, 5),
    ],
)
def test_search_is_not_an_oracle(
    clients: dict[str, httpx.Client], query: str, scoped_total: int, admin_total: int
) -> None:
    scoped = clients["orders"].get(f"/api/traces?{query}").json()
    admin = clients["admin"].get(f"/api/traces?{query}").json()
    assert (scoped["total"], admin["total"]) == (scoped_total, admin_total)
    page = clients["orders"].get(f"/?{query}").text
    assert len(re.findall(r'<tr class="trace', page)) == scoped_total


def test_namespace_map_drops_and_hides_what_the_viewer_may_not_see(
    clients: dict[str, httpx.Client],
) -> None:
    admin = clients["admin"].get("/api/map?window=30d").json()
    assert {(e["caller"], e["callee"]) for e in admin["edges"]} == {
        ("orders", "payments"),
        ("orders", "inventory"),
        ("orders", "shadow"),
        ("payments", "inventory"),
    }
    scoped = clients["orders"].get("/api/map?window=30d").json()
    # payments -> inventory is between two hidden namespaces: dropped. shadow is hidden and
    # not linked by the collector: its name is not shown. payments and inventory are.
    assert {(e["caller"], e["callee"]) for e in scoped["edges"]} == {
        ("orders", "payments"),
        ("orders", "inventory"),
        ("orders", "(hidden)"),
    }
    assert "shadow" not in str(scoped)
    assert set(scoped["namespaces"]) == {"orders", "payments", "inventory", "(hidden)"}
    page = clients["orders"].get("/map?window=30d").text
    assert "shadow" not in page and 'data-callee="(hidden)"' in page
    assert 'data-caller="payments"' not in page


def test_scoped_viewer_cannot_open_a_hidden_namespace(clients: dict[str, httpx.Client]) -> None:
    orders = clients["orders"]
    for url in (
        "/api/workflows/payments/payment-order-1/tree",
        "/api/workflows/payments/payment-order-1/nodes/0",
        "/workflows/payments/payment-order-1",
        "/api/diagnosis?namespace=payments&task_queue=payments-tq",
    ):
        response = orders.get(url)
        assert response.status_code == 404, url
        # Exactly what a workflow that does not exist gets: a hidden one is no different.
        made_up = orders.get(url.replace("payment-order-1", "made-up-id"))
        assert made_up.status_code == 404
        assert response.text.replace("payment-order-1", "made-up-id") == made_up.text
    states = orders.get("/api/namespaces").json()["namespaces"]
    assert [state["namespace"] for state in states] == ["orders"]
    admin_states = clients["admin"].get("/api/namespaces").json()["namespaces"]
    assert [state["namespace"] for state in admin_states] == ["inventory", "orders", "payments"]


def test_diagnosis_of_an_unknown_namespace_is_a_404(
    clients: dict[str, httpx.Client], open_site: Site
) -> None:
    # Before: 200 with "KeyError: 'nope'" in its body.
    response = clients["admin"].get("/api/diagnosis?namespace=nope&task_queue=q")
    assert response.status_code == 404
    assert response.json() == {"detail": "unknown namespace 'nope'"}
    # An app with no Temporal connections has nothing to ask.
    with open_site.client() as client:
        assert client.get("/api/diagnosis?namespace=orders&task_queue=q").status_code == 501


def test_open_ui_sees_everything(open_site: Site) -> None:
    with open_site.client() as client:
        tree = client.get("/api/workflows/orders/order-1/tree").json()
        assert any(n["workflow_id"] == "payment-order-1" for n in _nodes(tree["root"]))
        assert client.get("/api/traces?workflow_id=payment-order-1").json()["total"] == 1


def test_live_diagnosis_with_temporal_unreachable_answers_within_its_deadline(
    clients: dict[str, httpx.Client],
) -> None:
    import time

    began = time.monotonic()
    response = clients["admin"].get("/api/diagnosis?namespace=orders&task_queue=orders-tq")
    assert time.monotonic() - began < 6.5
    assert response.status_code == 200 and response.json()["error"]
