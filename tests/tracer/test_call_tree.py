"""The call tree of the sample's orders, read through the JSON API (DESIGN.md contract)."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from tests.conftest import LinkedSample

NODE_FIELDS = {
    "kind", "namespace", "name", "workflow_id", "run_id", "status", "start_time", "end_time",
    "error", "link", "verified", "children",
}  # fmt: skip


def _time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def _child(node: dict[str, Any], kind: str, name_suffix: str) -> dict[str, Any]:
    matches = [c for c in node["children"] if c["kind"] == kind and c["name"].endswith(name_suffix)]
    assert len(matches) == 1, f"expected one {kind} {name_suffix} under {node['name']}: {matches}"
    return matches[0]


def _all(node: dict[str, Any]) -> list[dict[str, Any]]:
    return [node, *(n for child in node["children"] for n in _all(child))]


async def test_order_tree_spans_orders_and_payments(linked_sample: LinkedSample) -> None:
    order_id = linked_sample.order_ids["ok"]
    root = await linked_sample.tree("orders", order_id)

    assert set(root) >= NODE_FIELDS
    assert (root["kind"], root["namespace"], root["name"]) == (
        "workflow",
        "orders",
        "OrderWorkflow",
    )
    assert (root["workflow_id"], root["status"], root["link"]) == (order_id, "completed", "root")
    assert root["run_id"] and root["error"] is None

    payment_call = _child(root, "nexus_operation", "PaymentsService/process_payment")
    assert payment_call["namespace"] == "orders" and payment_call["link"] == "call"
    assert payment_call["name"] == "payments-endpoint/PaymentsService/process_payment"
    assert payment_call["status"] == "completed"

    [payment] = payment_call["children"]
    assert (payment["kind"], payment["namespace"]) == ("workflow", "payments")
    assert (payment["name"], payment["workflow_id"]) == (
        "ProcessPaymentWorkflow",
        f"payment-{order_id}",
    )
    assert (payment["link"], payment["verified"], payment["status"]) == ("nexus", True, "completed")
    activities = [(c["kind"], c["name"], c["status"]) for c in payment["children"]]
    assert activities == [
        ("activity", "validate_payment", "completed"),
        ("activity", "charge_card", "completed"),
        ("activity", "record_transaction", "completed"),
    ]

    # Times nest: each call starts after its caller started and ends before it ended.
    for parent, child in [
        (root, payment_call),
        (payment_call, payment),
        (payment, payment["children"][-1]),
    ]:
        assert _time(parent["start_time"]) <= _time(child["start_time"])
        assert _time(child["end_time"]) <= _time(parent["end_time"])


async def test_sync_operation_shows_a_handler_in_the_target_namespace(
    linked_sample: LinkedSample,
) -> None:
    root = await linked_sample.tree("orders", linked_sample.order_ids["ok"])
    quote = _child(root, "nexus_operation", "PaymentsService/get_quote")
    [handler] = quote["children"]
    assert (handler["kind"], handler["namespace"], handler["link"]) == (
        "nexus_handler",
        "payments",
        "nexus",
    )
    assert handler["name"] == "PaymentsService/get_quote" and handler["status"] == "completed"


async def test_fire_and_forget_notification_hangs_under_its_operation(
    linked_sample: LinkedSample,
) -> None:
    order_id = linked_sample.order_ids["ok"]
    root = await linked_sample.tree("orders", order_id)
    send = _child(root, "nexus_operation", "NotificationsService/send_confirmation")
    [confirmation] = send["children"]
    assert (confirmation["namespace"], confirmation["name"]) == (
        "notifications",
        "SendConfirmationWorkflow",
    )
    assert confirmation["workflow_id"] == f"confirm-{order_id}"


async def test_declined_card_fails_the_path_from_root_to_the_activity(
    linked_sample: LinkedSample,
) -> None:
    root = await linked_sample.tree("orders", linked_sample.order_ids["declined"])
    assert root["status"] == "failed"
    payment_call = _child(root, "nexus_operation", "process_payment")
    [payment] = payment_call["children"]
    charge = _child(payment, "activity", "charge_card")
    for node in (root, payment_call, payment, charge):
        assert node["status"] == "failed", node["name"]
        assert node["error"]["type"] == "CardDeclined", node["name"]
    assert "declined" in charge["error"]["message"]
    # The order stopped at the payment: no confirmation, no stock reservation.
    names = {node["name"] for node in _all(root)}
    assert not any("send_confirmation" in name or "reserve_stock" in name for name in names)


async def test_timed_out_payment_is_marked_timed_out(linked_sample: LinkedSample) -> None:
    root = await linked_sample.tree("orders", linked_sample.order_ids["slow"])
    payment_call = _child(root, "nexus_operation", "process_payment")
    assert payment_call["status"] == "timed_out"
    assert payment_call["error"]["type"] == "TimeoutError"
    assert root["status"] == "failed" and root["error"]["type"] == "PaymentTimedOut"
    # The handler workflow was started before the caller gave up, and is linked.
    [payment] = payment_call["children"]
    assert payment["namespace"] == "payments" and payment["name"] == "ProcessPaymentWorkflow"


async def test_tree_asked_from_the_handler_is_rooted_at_the_order(
    linked_sample: LinkedSample,
) -> None:
    order_id = linked_sample.order_ids["ok"]
    from_handler = await linked_sample.tree("payments", f"payment-{order_id}")
    assert (from_handler["namespace"], from_handler["workflow_id"]) == ("orders", order_id)


async def test_unknown_workflow_is_a_clear_404(linked_sample: LinkedSample) -> None:
    response = await linked_sample.api.get("/api/workflows/orders/no-such-order/tree")
    assert response.status_code == 404
    assert "no-such-order" in response.json()["detail"]


async def test_tree_page_renders_the_same_tree(linked_sample: LinkedSample) -> None:
    order_id = linked_sample.order_ids["ok"]
    response = await linked_sample.api.get(f"/workflows/orders/{order_id}")
    assert response.status_code == 200
    # What a reader sees: the text without its markup (long ids are split in two spans
    # so that they can shorten in the middle).
    text = re.sub(r"<[^>]+>", "", response.text)
    for name in ("OrderWorkflow", "ProcessPaymentWorkflow", f"payment-{order_id}", "charge_card"):
        assert name in text
    assert '<span class="ns">payments</span>' in response.text


async def test_namespaces_report_the_linker_state(linked_sample: LinkedSample) -> None:
    response = await linked_sample.api.get("/api/namespaces")
    states = {item["namespace"]: item for item in response.json()["namespaces"]}
    assert set(states) == {"orders", "payments", "notifications", "inventory"}
    assert all(state["status"] == "ok" for state in states.values())
    assert states["orders"]["runs_linked"] >= 4
    # One collector: it holds every namespace's lease, named host:pid/id.
    assert len({state["linked_by"] for state in states.values()}) == 1
    assert all(state["linked_by"] for state in states.values())


async def test_activity_wrapper_links_the_inventory_workflow_from_its_header(
    linked_sample: LinkedSample,
) -> None:
    for scenario, activity in (("ok", "reserve_stock"), ("poll", "reserve_stock_and_poll")):
        order_id = linked_sample.order_ids[scenario]
        root = await linked_sample.tree("orders", order_id)
        call = _child(root, "activity", activity)
        assert call["status"] == "completed"
        [reservation] = call["children"]
        assert (reservation["kind"], reservation["namespace"], reservation["name"]) == (
            "workflow",
            "inventory",
            "ReserveStockWorkflow",
        )
        assert reservation["workflow_id"] == f"stock-{order_id}"
        assert reservation["link"] == "activity_wrapper"
        # The test fleet shares no signing key with the API: the claim is kept, unverified.
        assert reservation["verified"] is False
        assert [c["name"] for c in reservation["children"]] == ["reserve_items"]
