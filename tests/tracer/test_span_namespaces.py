"""Spans without ``temporal.namespace`` get the namespace of the run (or Nexus call) they
belong to: as they are stored when the linker has the run already, else once it has.

On SQLite and on a real PostgreSQL (the ``store`` fixture).
"""

from __future__ import annotations

import itertools
import random
from datetime import UTC, datetime, timedelta

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans
from opentelemetry.proto.trace.v1.trace_pb2 import Span as OtlpSpan
from sqlalchemy import select, text

from tracer.db import Span, create_db_engine, upgrade_database
from tracer.domain import NodeKind, Status
from tracer.ingest import request_to_rows
from tracer.store import CallFacts, RunFacts, Store
from tracer.store._span_namespaces import waiting_spans

T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
_ids = itertools.count(1)


def sdk_span(name: str, **attributes: str) -> OtlpSpan:
    """A span as the SDK's own TracingInterceptor writes it: ids, never a namespace."""
    return OtlpSpan(
        trace_id=random.getrandbits(128).to_bytes(16, "big"),
        span_id=(next(_ids) + random.getrandbits(40)).to_bytes(8, "big"),
        name=name,
        start_time_unix_nano=1_700_000_000_000_000_000,
        end_time_unix_nano=1_700_000_000_500_000_000,
        attributes=[
            KeyValue(key=key, value=AnyValue(string_value=value))
            for key, value in attributes.items()
        ],
    )


def receive(store: Store, *spans: OtlpSpan) -> None:
    """Store spans through the same decoding the OTLP receiver uses."""
    request = ExportTraceServiceRequest(
        resource_spans=[ResourceSpans(scope_spans=[ScopeSpans(spans=list(spans))])]
    )
    store.save_spans(request_to_rows(request, datetime.now(UTC)).rows)


def namespaces(store: Store) -> dict[str, str | None]:
    """Stored spans' namespace, by span name."""
    with store.session() as session:
        return {
            name: namespace
            for name, namespace in session.execute(select(Span.name, Span.namespace))
        }


def run(namespace: str, workflow_id: str, *calls: CallFacts) -> RunFacts:
    suffix = random.getrandbits(32)
    return RunFacts(
        namespace=namespace,
        workflow_id=workflow_id,
        run_id=f"run-{workflow_id}-{suffix:08x}",
        workflow_type="W",
        task_queue="tq",
        status=Status.COMPLETED,
        start_time=T0,
        close_time=T0 + timedelta(seconds=1),
        history_length=5,
        calls=list(calls),
    )


def test_spans_of_a_stored_run_take_its_namespace_as_they_arrive(store: Store) -> None:
    order = run("orders", "order-1")
    store.save_run(order)
    receive(
        store,
        sdk_span("RunWorkflow:W", temporalWorkflowID="order-1", temporalRunID=order.run_id),
        sdk_span("RunActivity:a", temporalWorkflowID="order-1", temporalRunID=order.run_id),
        # Another workflow's id with this run id: not this run's span, left alone.
        sdk_span("mismatch", temporalWorkflowID="order-2", temporalRunID=order.run_id),
        sdk_span("unlinked", temporalWorkflowID="order-9", temporalRunID="run-not-stored"),
        sdk_span("no temporal identity"),
    )
    assert namespaces(store) == {
        "RunWorkflow:W": "orders",
        "RunActivity:a": "orders",
        "mismatch": None,
        "unlinked": None,
        "no temporal identity": None,
    }


def test_a_namespace_the_span_names_is_kept(store: Store) -> None:
    order = run("orders", "order-1")
    store.save_run(order)
    span = sdk_span("ours", temporalRunID=order.run_id)
    span.attributes.append(KeyValue(key="temporal.namespace", value=AnyValue(string_value="x")))
    receive(store, span)
    assert namespaces(store) == {"ours": "x"}


def test_spans_stored_before_their_run_get_its_namespace_afterwards(store: Store) -> None:
    order, payment = run("orders", "order-1"), run("payments", "payment-1")
    receive(
        store,
        sdk_span("order span", temporalWorkflowID="order-1", temporalRunID=order.run_id),
        sdk_span("payment span", temporalRunID=payment.run_id),
        sdk_span("never linked", temporalRunID="run-never-linked"),
    )
    assert store.fill_span_namespaces() == 0  # nothing to go by yet
    store.save_run(order)
    assert store.fill_span_namespaces() == 1
    assert namespaces(store)["order span"] == "orders"
    # Nothing new was linked: the spans still waiting are not looked at again.
    assert store.fill_span_namespaces() == 0
    store.save_run(payment)
    assert store.fill_span_namespaces() == 1
    assert namespaces(store) == {
        "order span": "orders",
        "payment span": "payments",
        "never linked": None,
    }


def test_the_walk_is_bounded_and_resumes(store: Store) -> None:
    order = run("orders", "order-1")
    receive(store, *(sdk_span(f"s{i}", temporalRunID=order.run_id) for i in range(5)))
    store.save_run(order)
    done = [store.fill_span_namespaces(limit=2) for _ in range(4)]
    assert done == [2, 2, 1, 0]
    assert set(namespaces(store).values()) == {"orders"}


def test_a_sync_handler_span_takes_the_namespace_its_endpoint_targets(store: Store) -> None:
    store.save_endpoints([("payments-endpoint", "payments", "payments-tq")])

    def quote(request_id: str, event_id: int) -> CallFacts:
        return CallFacts(
            event_id=event_id,
            kind=NodeKind.NEXUS_OPERATION,
            name="payments-endpoint/Payments/quote",
            start_time=T0,
            status=Status.COMPLETED,
            end_time=T0,
            endpoint="payments-endpoint",
            service="Payments",
            operation="quote",
            request_id=request_id,
        )

    store.save_run(run("orders", "order-1", quote("req-1", 5)))
    handler = "RunStartNexusOperationHandler:Payments/quote"
    receive(
        store,
        sdk_span(f"{handler} 1", **{"temporal.nexus.request_id": "req-1"}),
        sdk_span(f"{handler} 2", **{"temporal.nexus.request_id": "req-2"}),
    )
    assert namespaces(store) == {f"{handler} 1": "payments", f"{handler} 2": None}
    # The second call's caller is linked later: the walk places its handler's span.
    store.save_run(run("orders", "order-2", quote("req-2", 5)))
    assert store.fill_span_namespaces() == 1
    assert namespaces(store)[f"{handler} 2"] == "payments"


def test_the_walk_reads_the_partial_index(sqlite_url: str) -> None:
    engine = create_db_engine(sqlite_url)
    upgrade_database(engine)
    query = waiting_spans("sqlite", after=0, limit=10).compile(
        engine, compile_kwargs={"literal_binds": True}
    )
    try:
        with engine.connect() as connection:
            plan = connection.execute(text(f"EXPLAIN QUERY PLAN {query}")).all()
    finally:
        engine.dispose()
    assert "ix_spans_namespace_unknown" in " ".join(str(row[-1]) for row in plan), plan
