"""Which spans a node's detail shows: a Nexus call holds its caller's start span, and the
handler workflow a call started holds the handler-side spans of that request."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from tracer.query import SpanInfo, TreeNode, match_node_spans

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def _nanos(at: datetime) -> int:
    return int(at.timestamp() * 1e9)


def span(name: str, at: datetime, **attributes: str) -> SpanInfo:
    """A span of the orders caller run unless ``attributes`` say otherwise."""
    namespace = attributes.pop("namespace", "orders")
    return SpanInfo(
        name=name,
        trace_id="t" * 32,
        span_id=f"{name}@{at.isoformat()}",
        service_name=None,
        duration_ms=1.0,
        status_code=0,
        status_message=None,
        attributes=attributes,
        namespace=namespace or None,
        workflow_id=attributes.get("temporal.workflow_id", "order-1" if namespace else None),
        run_id=None,
        request_id=attributes.get("temporal.nexus.request_id"),
        start_unix_nano=_nanos(at),
    )


def call(operation: str, at: datetime, request_id: str, token: str | None = None) -> TreeNode:
    details = {
        "endpoint": "payments-endpoint",
        "service": "PaymentsService",
        "operation": operation,
        "request_id": request_id,
    }
    if token:
        details["operation_token"] = token
    return TreeNode(
        "nexus_operation",
        "orders",
        f"payments-endpoint/PaymentsService/{operation}",
        "completed",
        at,
        at + timedelta(seconds=1),
        "call",
        details=details,
    )


def tree() -> tuple[TreeNode, TreeNode, TreeNode, TreeNode, TreeNode]:
    """An order that pays twice through the same operation and asks for a quote."""
    first = call("process_payment", T0 + timedelta(seconds=1), "req-1", token="tok-1")
    second = call("process_payment", T0 + timedelta(seconds=5), "req-2")
    quote = call("get_quote", T0 + timedelta(seconds=3), "req-3")
    handler = TreeNode(
        "workflow",
        "payments",
        "ProcessPaymentWorkflow",
        "completed",
        T0 + timedelta(seconds=1.1),
        T0 + timedelta(seconds=2),
        "nexus",
        workflow_id="payment-1",
        run_id="run-p",
    )
    first.children = [handler]
    order = TreeNode(
        "workflow",
        "orders",
        "OrderWorkflow",
        "completed",
        T0,
        T0 + timedelta(seconds=9),
        "root",
        workflow_id="order-1",
        run_id="run-o",
        children=[first, quote, second],
    )
    return order, first, second, quote, handler


def names(spans: list[SpanInfo]) -> list[str]:
    return [s.name for s in spans]


def test_each_nexus_call_holds_its_callers_start_span() -> None:
    order, first, second, quote, handler = tree()
    spans = [
        span("RunWorkflow:OrderWorkflow", T0),
        # The SDK's span names its target only in its name; ours also in attributes.
        span("StartNexusOperation:PaymentsService/process_payment", T0 + timedelta(seconds=4.9)),
        span("StartNexusOperation:PaymentsService/get_quote", T0 + timedelta(seconds=2.95)),
        span(
            "StartNexusOperation:PaymentsService/process_payment",
            T0 + timedelta(seconds=0.95),
            **{"temporal.nexus.operation_token": "tok-1"},
        ),
        span(
            "RunStartNexusOperationHandler:PaymentsService/process_payment",
            T0 + timedelta(seconds=1.05),
            namespace="payments",
            **{"temporal.nexus.request_id": "req-1"},
        ),
        span(
            "RunWorkflow:ProcessPaymentWorkflow",
            T0 + timedelta(seconds=1.1),
            namespace="payments",
            **{"temporal.workflow_id": "payment-1"},
        ),
    ]
    assert names(match_node_spans(first, order, spans)) == [
        "StartNexusOperation:PaymentsService/process_payment"
    ]
    assert match_node_spans(first, order, spans)[0].start_unix_nano == _nanos(
        T0 + timedelta(seconds=0.95)
    )
    assert match_node_spans(second, order, spans)[0].start_unix_nano == _nanos(
        T0 + timedelta(seconds=4.9)
    )
    assert names(match_node_spans(quote, order, spans)) == [
        "StartNexusOperation:PaymentsService/get_quote"
    ]
    # The caller's own detail keeps its run span, not its calls' spans.
    assert names(match_node_spans(order, None, spans)) == ["RunWorkflow:OrderWorkflow"]
    # The handler workflow holds the handler side of the request that started it.
    assert names(match_node_spans(handler, first, spans)) == [
        "RunStartNexusOperationHandler:PaymentsService/process_payment",
        "RunWorkflow:ProcessPaymentWorkflow",
    ]


def test_a_start_span_far_from_every_call_stays_with_its_workflow() -> None:
    order, first, *_ = tree()
    stray = span("StartNexusOperation:PaymentsService/process_payment", T0 + timedelta(hours=1))
    assert match_node_spans(first, order, [stray]) == []
    assert names(match_node_spans(order, None, [stray])) == [stray.name]
