"""OTLP export upstream, against a real Arize Phoenix (``phoenix serve`` from PyPI).

Spans are written the way the receiver writes them (SDK spans, OTLP-encoded, decoded by
``tracer.ingest`` into rows), and the exporter sends them to Phoenix through the
opentelemetry-exporter-otlp exporters; the tests read back what Phoenix lists.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanContext, TraceFlags
from sqlalchemy import Table, insert, select

from interceptors import TraceParent
from tests.conftest import LinkedSample, skip_or_fail
from tracer.db import (
    Call,
    ExportCursor,
    Link,
    NexusEndpointRow,
    Span,
    WorkflowRun,
    create_db_engine,
    upgrade_database,
)
from tracer.devserver import free_port
from tracer.export import (
    ExportDestination,
    Exporter,
    ExportSettings,
    RoundReport,
    derived_span_id,
    parse_export_endpoints,
)
from tracer.ingest import request_to_rows
from tracer.store import RunFacts, Store

from ._phoenix import Phoenix, find_phoenix, flatten

FAST = ExportSettings(
    poll_interval=0.2,
    link_wait=2.0,
    synthesize_after=0.0,
    backoff_initial=0.2,
    backoff_max=1.0,
    request_timeout=2.0,
)


@pytest.fixture(scope="module")
async def phoenix(
    tmp_path_factory: pytest.TempPathFactory, artifacts_dir: Path
) -> AsyncIterator[Phoenix]:
    """One ``phoenix serve`` for the module, on free ports, in a temporary directory."""
    executable = find_phoenix()
    if executable is None:
        skip_or_fail(
            "Arize Phoenix is not installed: python3 -m venv .venv/phoenix && "
            ".venv/phoenix/bin/pip install arize-phoenix"
        )
    assert executable is not None
    server = Phoenix(
        executable,
        tmp_path_factory.mktemp("phoenix"),
        free_port(),
        free_port(),
        artifacts_dir / "phoenix.log",
    )
    server.start()
    try:
        await server.wait_ready()
        yield server
    finally:
        server.stop()


@pytest.fixture
def fresh_store(tmp_path: Path) -> Iterator[Store]:
    """A migrated, empty SQLite store of this test's own."""
    engine = create_db_engine(f"sqlite:///{tmp_path / 'export.db'}")
    upgrade_database(engine)
    try:
        yield Store(engine)
    finally:
        engine.dispose()


def _span(
    name: str,
    trace_id: int,
    span_id: int,
    parent: int | None = None,
    attributes: dict[str, Any] | None = None,
    service: str = "worker",
) -> ReadableSpan:
    now = time.time_ns()
    flags = TraceFlags(TraceFlags.SAMPLED)
    return ReadableSpan(
        name,
        context=SpanContext(trace_id, span_id, False, flags),
        parent=SpanContext(trace_id, parent, False, flags) if parent else None,
        resource=Resource({"service.name": service}),
        attributes=attributes or {},
        start_time=now - 5_000_000,
        end_time=now,
    )


def receive(store: Store, spans: list[ReadableSpan]) -> None:
    """Store spans exactly as the OTLP receiver does."""
    decoded = request_to_rows(encode_spans(spans), datetime.now(UTC))
    assert not decoded.rejected, decoded.error_message
    store.save_spans(decoded.rows)


def _random_spans(count: int, trace_id: int, tag: str) -> list[ReadableSpan]:
    root = random.getrandbits(63) | 1
    spans = [_span(f"{tag}-root", trace_id, root, attributes={"n": 0})]
    spans += [
        _span(f"{tag}-{n}", trace_id, random.getrandbits(63) | 1, root, {"n": n})
        for n in range(1, count)
    ]
    return spans


def _stored_span_ids(store: Store, trace_id: int) -> set[str]:
    with store.session() as session:
        return set(session.scalars(select(Span.span_id).where(Span.trace_id == f"{trace_id:032x}")))


def _cursor(store: Store, destination: ExportDestination) -> ExportCursor:
    with store.session() as session:
        cursor = session.get(ExportCursor, destination.key)
        assert cursor is not None
        return cursor


@contextlib.asynccontextmanager
async def exporting(
    store: Store, destination: ExportDestination, settings: ExportSettings = FAST
) -> AsyncIterator[Exporter]:
    """Run an exporter in the background for the duration of the block."""
    exporter = Exporter(store, [destination], settings)
    stop = asyncio.Event()
    task = asyncio.create_task(exporter.run(stop))
    try:
        yield exporter
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


def _copy_linked(source: Store, target: Store) -> None:
    """The linked sample's runs, calls, links and endpoints, without any span."""
    with source.session() as read, target.session.begin() as write:
        for model in (WorkflowRun, Call, Link, NexusEndpointRow):
            table = model.__table__
            assert isinstance(table, Table)
            rows = [dict(row._mapping) for row in read.execute(select(table))]
            if rows:
                write.execute(insert(table), rows)


# --- the order tree ----------------------------------------------------------------------


async def test_sample_tree_reaches_phoenix_with_namespaces_links_and_synthesized_runs(
    phoenix: Phoenix, linked_sample: LinkedSample, fresh_store: Store
) -> None:
    store = fresh_store
    _copy_linked(linked_sample.collector.store, store)
    ok, declined = linked_sample.order_ids["ok"], linked_sample.order_ids["declined"]
    with store.session() as session:
        runs = {(r.namespace, r.workflow_id): r for r in session.scalars(select(WorkflowRun))}
        order = runs[("orders", ok)]
        calls = list(session.scalars(select(Call).where(Call.run_pk == order.id)))
    # The sample traces: each Nexus call kept the caller's traceparent in its header.
    nexus = {c.operation: c for c in calls if c.kind == "nexus_operation"}
    parents = {op: TraceParent.parse(c.traceparent) for op, c in nexus.items()}
    assert parents and all(parents.values()), parents
    trace_t = parents["process_payment"].trace_id  # type: ignore[union-attr]

    # The order's worker traced with the SDK's own interceptor (no namespace attribute);
    # the payments worker traced too, but started a trace of its own.
    root = random.getrandbits(63) | 1
    sdk_attrs = {"temporalWorkflowID": ok, "temporalRunID": order.run_id}
    order_spans = [_span("RunWorkflow:OrderWorkflow", trace_t, root, None, sdk_attrs, "orders")]
    for op, call in nexus.items():
        span_id = parents[op].span_id  # type: ignore[union-attr]
        name = f"StartNexusOperation:{call.service}/{op}"
        order_spans.append(_span(name, trace_t, span_id, root, sdk_attrs, "orders"))
    payment = runs[("payments", f"payment-{ok}")]
    trace_b = random.getrandbits(127) | 1
    payment_span = _span(
        "RunWorkflow:ProcessPaymentWorkflow",
        trace_b,
        random.getrandbits(63) | 1,
        None,
        {"temporal.workflow_id": payment.workflow_id, "temporal.run_id": payment.run_id},
        "payments",
    )
    receive(store, [*order_spans, payment_span])

    traced = {order.run_id, payment.run_id}
    synthesized = {
        f"{derived_span_id(r.namespace, r.run_id):016x}": r
        for r in runs.values()
        if r.run_id not in traced and r.close_time is not None
    }
    received = {f"{s.context.span_id:016x}" for s in [*order_spans, payment_span]}
    destination = ExportDestination(f"{phoenix.url}/v1/traces")
    async with exporting(store, destination):
        got = await phoenix.wait_for(received | set(synthesized))

    # Received spans go out with the namespace they ran in, looked up for SDK spans.
    for span_id in received:
        attributes = flatten(got[span_id]["attributes"])
        expected = "payments" if span_id == f"{payment_span.context.span_id:016x}" else "orders"
        assert attributes["temporal.namespace"] == expected
        assert attributes["temporal.run_id"] in traced
    # The payment handler sits in another trace: it links to the caller's Nexus span.
    handler = flatten(got[f"{payment_span.context.span_id:016x}"]["attributes"])
    assert handler["temporal.caller.trace_id"] == f"{trace_t:032x}"
    assert handler["temporal.caller.span_id"] == f"{parents['process_payment'].span_id:016x}"  # type: ignore[union-attr]
    assert handler["temporal.caller.namespace"] == "orders"

    # Runs without spans are synthesized from their histories, into the caller's trace.
    for span_id, run in synthesized.items():
        span = got[span_id]
        attributes = flatten(span["attributes"])
        assert attributes["temporal.synthesized"] is True
        assert attributes["temporal.namespace"] == run.namespace
        assert span["name"] == f"RunWorkflow:{run.workflow_type}"
    confirm_run = runs[("notifications", f"confirm-{ok}")]
    confirm = got[f"{derived_span_id('notifications', confirm_run.run_id):016x}"]
    # Fire and forget still recorded the caller's traceparent: the handler hangs off it.
    confirm_parent = parents["send_confirmation"]
    assert confirm["context"]["trace_id"] == f"{trace_t:032x}"
    assert confirm["parent_id"] == f"{confirm_parent.span_id:016x}"  # type: ignore[union-attr]
    stock = got[f"{derived_span_id('inventory', runs[('inventory', f'stock-{ok}')].run_id):016x}"]
    # An activity wrapper carries no traceparent in history: it hangs off the caller's run.
    assert (stock["context"]["trace_id"], stock["parent_id"]) == (f"{trace_t:032x}", f"{root:016x}")

    # An order that sent no span at all is one whole synthesized tree, in the trace its
    # Nexus headers recorded, every parent present.
    declined_runs = [runs[("orders", declined)], runs[("payments", f"payment-{declined}")]]
    traces = {got[f"{derived_span_id(r.namespace, r.run_id):016x}"]["context"]["trace_id"]
              for r in declined_runs}  # fmt: skip
    assert len(traces) == 1
    in_trace = [s for s in (await phoenix.spans()) if s["context"]["trace_id"] in traces]
    ids = {s["context"]["span_id"] for s in in_trace}
    assert all(s["parent_id"] in ids for s in in_trace if s["parent_id"]), in_trace
    assert any(s["name"].startswith("StartNexusOperation:") for s in in_trace)


# --- outages and restarts ----------------------------------------------------------------


async def test_phoenix_down_for_a_while_loses_nothing(
    phoenix: Phoenix, fresh_store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="tracer.export")
    store = fresh_store
    trace_id = random.getrandbits(127) | 1
    receive(store, _random_spans(50, trace_id, "before"))
    destination = ExportDestination(f"{phoenix.url}/v1/traces")
    async with exporting(store, destination):
        await phoenix.wait_for(_stored_span_ids(store, trace_id))
        phoenix.stop()
        try:
            for batch in range(3):  # spans keep arriving while Phoenix is down
                receive(store, _random_spans(101, trace_id, f"outage{batch}")[1:])
                await asyncio.sleep(1.0)
            assert _cursor(store, destination).last_error
        finally:
            phoenix.start()
        await phoenix.wait_ready()
        stored = _stored_span_ids(store, trace_id)
        got = await phoenix.wait_for(stored, timeout=30)
    assert len(stored) == 350
    # What a user sees: every stored span once (Phoenix keeps one row per span id).
    listed = [s for s in await phoenix.spans() if s["context"]["trace_id"] == f"{trace_id:032x}"]
    assert sorted(s["context"]["span_id"] for s in listed) == sorted(stored)
    assert all(got[s]["name"] for s in stored)
    messages = [
        (r.levelno, r.getMessage()) for r in caplog.records if r.name.startswith("tracer.export")
    ]
    warnings = [m for level, m in messages if level == logging.WARNING]
    assert len(warnings) == 1 and "failing" in warnings[0], messages
    assert any("recovered" in m for level, m in messages if level == logging.INFO), messages
    assert _cursor(store, destination).last_error is None


async def test_a_destination_scoped_to_namespaces_receives_only_theirs(
    phoenix: Phoenix, fresh_store: Store
) -> None:
    """``--export-namespaces orders``: a backend the payments team's data must not reach
    gets orders spans only; a span whose namespace is unknown is not sent either."""
    store = fresh_store
    trace_id = random.getrandbits(127) | 1
    spans = {
        name: _span(name, trace_id, random.getrandbits(63) | 1, attributes=attributes)
        for name, attributes in (
            ("orders-span", {"temporal.namespace": "orders"}),
            ("payments-span", {"temporal.namespace": "payments"}),
            ("nameless-span", {}),
        )
    }
    receive(store, list(spans.values()))
    (destination,) = parse_export_endpoints(
        f"{phoenix.url}/v1/traces", namespaces=frozenset({"orders"})
    )
    async with exporting(store, destination):
        await phoenix.wait_for({f"{spans['orders-span'].context.span_id:016x}"})
        deadline = time.monotonic() + 15
        with store.session() as session:
            last = max(session.scalars(select(Span.id)))
        while _cursor_or_none(store, destination) != last:
            assert time.monotonic() < deadline, "the cursor did not pass the other spans"
            await asyncio.sleep(0.2)
    listed = [s for s in await phoenix.spans() if s["context"]["trace_id"] == f"{trace_id:032x}"]
    assert [s["name"] for s in listed] == ["orders-span"]
    assert _cursor(store, destination).spans_exported == 1


def _cursor_or_none(store: Store, destination: ExportDestination) -> int | None:
    with store.session() as session:
        cursor = session.get(ExportCursor, destination.key)
        return cursor.span_cursor if cursor is not None else None


async def test_restarted_exporter_resumes_from_its_cursor_over_grpc(
    phoenix: Phoenix, fresh_store: Store
) -> None:
    store = fresh_store
    trace_id = random.getrandbits(127) | 1
    receive(store, _random_spans(40, trace_id, "first"))
    (destination,) = parse_export_endpoints(f"grpc://127.0.0.1:{phoenix.grpc_port}")
    async with exporting(store, destination):
        await phoenix.wait_for(_stored_span_ids(store, trace_id))
    assert _cursor(store, destination).spans_exported == 40

    receive(store, _random_spans(10, trace_id, "second"))
    async with exporting(store, destination):  # a new process: only the cursor is kept
        await phoenix.wait_for(_stored_span_ids(store, trace_id))
        await asyncio.sleep(0.5)  # a few more rounds: nothing old goes out again
    cursor = _cursor(store, destination)
    assert cursor.spans_exported == 50
    with store.session() as session:
        assert cursor.span_cursor == max(session.scalars(select(Span.id)))


# --- the cursor itself, on SQLite and PostgreSQL -----------------------------------------


def _row(span_id: int, row_id: int, trace_id: int) -> dict[str, Any]:
    rows = request_to_rows(
        encode_spans([_span(f"s{row_id}", trace_id, span_id)]), datetime.now(UTC)
    ).rows
    return {**rows[0], "id": row_id}


async def test_rows_committed_late_below_the_cursor_are_still_delivered(
    phoenix: Phoenix, store: Store
) -> None:
    trace_id = random.getrandbits(127) | 1
    # Ids 1-5 and 7-9 visible; id 6 is a transaction that commits after the cursor passed.
    store.save_spans([_row(1000 + i, i, trace_id) for i in (1, 2, 3, 4, 5, 7, 8, 9)])
    destination = ExportDestination(f"{phoenix.url}/v1/traces")
    exporter = Exporter(store, [destination], FAST)
    first = await asyncio.to_thread(exporter.export_once, destination)
    assert (first.spans, _cursor(store, destination).span_cursor) == (8, 9)
    assert _cursor(store, destination).span_gaps.startswith("[[6, 6")
    store.save_spans([_row(1006, 6, trace_id)])
    second: RoundReport = await asyncio.to_thread(exporter.export_once, destination)
    assert (second.spans, second.late_spans) == (0, 1)
    assert _cursor(store, destination).span_gaps == "[]"
    await phoenix.wait_for({f"{1000 + i:016x}" for i in range(1, 10)})
    third = await asyncio.to_thread(exporter.export_once, destination)
    assert third.total == 0


# --- configuration -----------------------------------------------------------------------


def test_endpoint_urls_name_protocol_and_path() -> None:
    parsed = parse_export_endpoints(
        "grpc://jaeger:4317, http://phoenix:6006 ,https://tempo.example/otlp/v1/traces,"
        "grpcs://tempo.example:443,grpc://jaeger:4317",
        headers={"authorization": "Bearer x"},
    )
    assert [(d.protocol, d.endpoint) for d in parsed] == [
        ("grpc", "http://jaeger:4317"),
        ("http/protobuf", "http://phoenix:6006/v1/traces"),
        ("http/protobuf", "https://tempo.example/otlp/v1/traces"),
        ("grpc", "https://tempo.example:443"),
    ]
    assert all(d.headers == {"authorization": "Bearer x"} for d in parsed)
    assert parse_export_endpoints(["grpc://a:4317", "http://b:4318"])[1].protocol == (
        "http/protobuf"
    )
    assert parse_export_endpoints("") == parse_export_endpoints(None) == []


@pytest.mark.parametrize("bad", ["jaeger:4317", "ftp://x:1", "http://"])
def test_a_bad_endpoint_url_is_refused_with_an_example(bad: str) -> None:
    with pytest.raises(ValueError, match="grpc://"):
        parse_export_endpoints(bad)


async def test_a_run_stored_late_with_an_old_close_time_is_still_synthesized(
    phoenix: Phoenix, fresh_store: Store
) -> None:
    """Rounds only look at runs stored since the last one, by store time, not close time:
    a run the linker stores late (say the collector was down) still goes out."""
    store = fresh_store
    now = datetime.now(UTC)

    def closed_run(name: str, closed_ago: timedelta) -> RunFacts:
        suffix = uuid.uuid4().hex[:8]
        return RunFacts(
            "orders", f"{name}-{suffix}", f"run-{name}-{suffix}", "LateWorkflow", "q",
            "completed", now - closed_ago - timedelta(seconds=5), now - closed_ago,
        )  # fmt: skip

    first = closed_run("first", timedelta(hours=1))
    store.save_run(first)
    destination = ExportDestination(f"{phoenix.url}/v1/traces")
    span_id = f"{derived_span_id('orders', first.run_id):016x}"
    async with exporting(store, destination):
        await phoenix.wait_for({span_id})
    assert _cursor(store, destination).run_cursor is not None

    late = closed_run("late", timedelta(hours=2))  # closed before the first, stored after
    store.save_run(late)
    async with exporting(store, destination):
        got = await phoenix.wait_for({f"{derived_span_id('orders', late.run_id):016x}"})
    [span] = [
        s for s in got.values() if flatten(s["attributes"]).get("temporal.run_id") == late.run_id
    ]
    assert flatten(span["attributes"])["temporal.synthesized"] is True
