"""The search and namespace-map queries on SQLite and on a real PostgreSQL server."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select, update

from tracer.db import EdgeHour, WorkflowRun
from tracer.jobs import purge_once
from tracer.query import TraceFilter, namespace_map
from tracer.store import CallFacts, LinkFacts, RunFacts, Store

NOW = datetime.now(UTC)


@pytest.fixture
def forest(store: Store) -> Store:
    """Three trees.

    - ``a`` (orders, completed, 3 s) calls ``b`` (payments) over Nexus;
    - ``c`` (orders, failed, 0.5 s) starts ``d`` (inventory, failed) through an activity
      wrapper and has a same-namespace child ``e``;
    - ``f`` (payments) has been running for two hours.
    """
    store.save_endpoints([("payments-endpoint", "payments", "payments-tq")])
    a_start = NOW - timedelta(minutes=10)
    store.save_run(
        RunFacts(
            namespace="orders",
            workflow_id="order-a",
            run_id="run-a",
            workflow_type="OrderWorkflow",
            status="completed",
            start_time=a_start,
            close_time=a_start + timedelta(seconds=3),
            calls=[
                CallFacts(
                    event_id=5,
                    kind="nexus_operation",
                    name="payments-endpoint/PaymentsService/pay",
                    start_time=a_start + timedelta(milliseconds=100),
                    end_time=a_start + timedelta(milliseconds=900),
                    status="completed",
                    endpoint="payments-endpoint",
                    service="PaymentsService",
                    operation="pay",
                    request_id="req-a",
                    operation_token="tok",
                )
            ],
            links=[
                LinkFacts(
                    kind="nexus",
                    source="caller_history",
                    caller_namespace="orders",
                    caller_workflow_id="order-a",
                    caller_run_id="run-a",
                    handler_namespace="payments",
                    handler_workflow_id="payment-a",
                    handler_run_id="run-b",
                    caller_event_id=5,
                )
            ],
        )
    )
    store.save_run(
        RunFacts(
            namespace="payments",
            workflow_id="payment-a",
            run_id="run-b",
            workflow_type="PaymentWorkflow",
            status="completed",
            start_time=a_start + timedelta(milliseconds=200),
            close_time=a_start + timedelta(milliseconds=800),
        )
    )
    c_start = NOW - timedelta(minutes=5)
    store.save_run(
        RunFacts(
            namespace="orders",
            workflow_id="order-c",
            run_id="run-c",
            workflow_type="OrderWorkflow",
            status="failed",
            start_time=c_start,
            close_time=c_start + timedelta(milliseconds=500),
            error_type="StockMissing",
            error_message="no stock",
            calls=[
                CallFacts(
                    event_id=5,
                    kind="activity",
                    name="reserve_stock",
                    start_time=c_start + timedelta(milliseconds=10),
                    end_time=c_start + timedelta(milliseconds=400),
                    status="failed",
                    activity_id="1",
                    error_type="StockMissing",
                    error_message="no stock",
                ),
                CallFacts(
                    event_id=9,
                    kind="child_workflow",
                    name="AuditWorkflow",
                    start_time=c_start + timedelta(milliseconds=20),
                    end_time=c_start + timedelta(milliseconds=60),
                    status="completed",
                ),
            ],
        )
    )
    store.save_run(
        RunFacts(
            namespace="inventory",
            workflow_id="stock-c",
            run_id="run-d",
            workflow_type="ReserveStockWorkflow",
            status="failed",
            start_time=c_start + timedelta(milliseconds=50),
            close_time=c_start + timedelta(milliseconds=350),
            error_type="StockMissing",
            error_message="no stock",
            links=[
                LinkFacts(
                    kind="activity_wrapper",
                    source="header",
                    caller_namespace="orders",
                    caller_workflow_id="order-c",
                    caller_run_id="run-c",
                    handler_namespace="inventory",
                    handler_workflow_id="stock-c",
                    handler_run_id="run-d",
                    caller_activity_id="1",
                    verified=False,
                )
            ],
        )
    )
    store.save_run(
        RunFacts(
            namespace="orders",
            workflow_id="audit-c",
            run_id="run-e",
            workflow_type="AuditWorkflow",
            status="completed",
            start_time=c_start + timedelta(milliseconds=20),
            close_time=c_start + timedelta(milliseconds=60),
            parent_namespace="orders",
            parent_workflow_id="order-c",
            parent_run_id="run-c",
            parent_event_id=9,
        )
    )
    store.save_run(
        RunFacts(
            namespace="payments",
            workflow_id="settle-f",
            run_id="run-f",
            workflow_type="SettlementWorkflow",
            status="running",
            start_time=NOW - timedelta(hours=2),
        )
    )
    return store


def _ids(store: Store, **criteria: object) -> list[str]:
    page = store.search(TraceFilter(**criteria), scope=None)  # type: ignore[arg-type]
    return [row.workflow_id for row in page.rows]


def test_roots_newest_first_with_summaries(forest: Store) -> None:
    page = forest.search(TraceFilter(), scope=None)
    assert [row.workflow_id for row in page.rows] == ["order-c", "order-a", "settle-f"]
    assert page.total == 3
    c, a, _ = page.rows
    assert a.namespaces == ["orders", "payments"] and a.node_count == 3 and a.error_count == 0
    assert c.namespaces == ["inventory", "orders"] and c.status == "failed"
    assert c.error_count == 1 and c.first_error is not None  # one origin, failing upwards
    assert c.first_error["namespace"] == "inventory"
    assert c.caller_duration_s == pytest.approx(0.5, abs=0.01)


def test_filters(forest: Store) -> None:
    assert _ids(forest, workflow_id="stock-c") == ["order-c"]  # matches a handler: its root
    assert _ids(forest, workflow_id="audit-c") == ["order-c"]  # a child: its parent's tree
    assert _ids(forest, workflow_id="stock") == []  # an id matches whole...
    assert _ids(forest, workflow_id="stock*") == ["order-c"]  # ... or as a prefix with *
    assert _ids(forest, workflow_id="order-*") == ["order-c", "order-a"]
    assert _ids(forest, workflow_id="100%_*") == []  # LIKE wildcards are literal
    assert _ids(forest, namespace="payments") == ["order-a", "settle-f"]
    assert _ids(forest, workflow_type="ReserveStockWorkflow") == ["order-c"]
    assert _ids(forest, status="failed") == ["order-c"]
    assert _ids(forest, min_duration=2.0) == ["order-a", "settle-f"]  # running: until now
    assert _ids(forest, since=NOW - timedelta(hours=1)) == ["order-c", "order-a"]
    assert _ids(forest, until=NOW - timedelta(hours=1)) == ["settle-f"]
    assert _ids(forest, visible_namespaces=frozenset({"inventory"})) == ["order-c"]
    assert _ids(forest, namespace="payments", visible_namespaces=frozenset({"orders"})) == [
        "order-a"
    ]


def test_pagination(forest: Store) -> None:
    first = forest.search(TraceFilter(page_size=2), scope=None)
    second = forest.search(TraceFilter(page_size=2, page=2), scope=None)
    assert (first.total, first.pages) == (3, 2)
    assert [r.workflow_id for r in first.rows + second.rows] == [
        "order-c",
        "order-a",
        "settle-f",
    ]


def test_namespace_map(forest: Store) -> None:
    forest.refresh_summaries()  # the map adds up the calls that summaries recorded
    with forest.session() as session:
        graph = namespace_map(session, since=NOW - timedelta(hours=1), namespaces=["extra"])
        later = namespace_map(session, since=NOW + timedelta(minutes=1))
    assert graph.namespaces == ["extra", "inventory", "orders", "payments"]
    edges = {(e.caller, e.callee): e for e in graph.edges}
    assert set(edges) == {("orders", "payments"), ("orders", "inventory")}
    nexus = edges[("orders", "payments")]
    assert (nexus.kinds, nexus.calls, nexus.errors) == (["nexus"], 1, 0)
    assert nexus.p95_ms == pytest.approx(800, rel=0.05)  # log-scale buckets, ~9 % apart
    wrapper = edges[("orders", "inventory")]
    assert (wrapper.kinds, wrapper.calls, wrapper.errors) == (["activity_wrapper"], 1, 1)
    assert wrapper.error_rate == 1.0 and wrapper.p95_ms == pytest.approx(300, rel=0.05)
    assert later.edges == []


def test_hourly_totals_follow_the_trees(forest: Store) -> None:
    """Long windows read hourly totals: a tree summarized again is not counted twice, and
    a tree retention deletes leaves them."""

    def month() -> dict[tuple[str, str], int]:
        graph = forest.namespace_map(since=NOW - timedelta(days=30), scope=None)
        return {(e.caller, e.callee): e.calls for e in graph.edges}

    before = month()
    assert before == {("orders", "payments"): 1, ("orders", "inventory"): 1}
    with forest.session.begin() as session:  # as if every run had been read again
        session.execute(update(WorkflowRun).values(summary_dirty=True))
    assert month() == before
    purge_once(forest, datetime.now(UTC) + timedelta(days=1))
    assert month() == {}
    with forest.session() as session:
        assert session.scalar(select(func.count()).select_from(EdgeHour)) == 0


def test_scoped_search_matches_ids_and_types_in_visible_namespaces_only(forest: Store) -> None:
    orders = frozenset({"orders"})

    def found(scope: frozenset[str] | None, **criteria: object) -> list[str | None]:
        page = forest.search(TraceFilter(**criteria), scope=scope)  # type: ignore[arg-type]
        return [row.workflow_id for row in page.rows]

    # payment-a is in order-a's tree, but only payments holds it.
    assert found(None, workflow_id="payment-a") == ["order-a"]
    assert found(orders, workflow_id="payment-a") == []
    assert found(orders, workflow_id="payment-*") == []
    assert found(orders, workflow_type="ReserveStockWorkflow") == []
    assert found(orders, workflow_id="order-a") == ["order-a"]
    assert found(orders, workflow_id="order-*") == ["order-c", "order-a"]
    # A payments viewer finds order-a's tree by its payment, without the order's id.
    payments = forest.search(
        TraceFilter(workflow_id="payment-a"), scope=frozenset({"payments"})
    ).rows
    assert [(row.workflow_type, row.workflow_id, row.run_id) for row in payments] == [
        ("OrderWorkflow", None, None)
    ]
