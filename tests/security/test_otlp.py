"""The OTLP receiver with a bearer token and span limits, served by uvicorn over real
SQLite files: a standard exporter configured by environment variables alone gets in,
nobody else does, and what a span holds is bounded whoever sends it."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from sqlalchemy import select

from tests.tracer.test_otlp_receiver import (
    JSON,
    PROTOBUF,
    count,
    request_body,
    rpc_status,
    serve,
    valid_span,
)
from tracer.collector import ServeSettings
from tracer.db import Span, create_db_engine, upgrade_database
from tracer.ingest import DEFAULT_SPAN_LIMITS, SpanLimits, create_receiver_app
from tracer.store import Store
from web import create_app

from .conftest import fill
from .conftest import serve as serve_web


def every_span(store: Store) -> list[Span]:
    """Every span in ``store`` (each test here has a store of its own), oldest first."""
    with store.session() as session:
        return list(session.scalars(select(Span).order_by(Span.id)))


TOKEN = "otlp-4f1c2e8d9b"
UNAUTHENTICATED = 16  # google.rpc.Code


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    """A migrated SQLite file."""
    engine = create_db_engine(f"sqlite:///{tmp_path / 'tracer.db'}")
    upgrade_database(engine)
    try:
        yield Store(engine)
    finally:
        engine.dispose()


@pytest.fixture
def guarded(store: Store) -> Iterator[str]:
    """A receiver that wants ``TOKEN``; yields its base URL."""
    with serve(create_receiver_app(store, token=TOKEN)) as url:
        yield url


def _spans() -> InMemorySpanExporter:
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "orders-worker"}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    with provider.get_tracer("test").start_as_current_span(
        "RunWorkflow:OrderWorkflow",
        attributes={"temporal.namespace": "orders", "temporal.workflow_id": "order-1"},
    ):
        pass
    provider.shutdown()
    return memory


@pytest.mark.parametrize("header", ["authorization=Bearer {}", "authorization=Bearer%20{}"])
def test_standard_exporter_configured_by_environment_variables_alone(
    guarded: str, store: Store, monkeypatch: pytest.MonkeyPatch, header: str
) -> None:
    for name in list(os.environ):
        if name.startswith("OTEL_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", guarded)
    memory = _spans()
    # Without the header: refused, and not retried (401 is not a retryable status).
    exporter = OTLPSpanExporter()
    began = time.monotonic()
    assert exporter.export(memory.get_finished_spans()) == SpanExportResult.FAILURE
    assert time.monotonic() - began < 5
    exporter.shutdown()
    assert count(store) == 0
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", header.format(TOKEN))
    exporter = OTLPSpanExporter()
    assert exporter.export(memory.get_finished_spans()) == SpanExportResult.SUCCESS
    exporter.shutdown()
    assert [(row.name, row.namespace) for row in every_span(store)] == [
        ("RunWorkflow:OrderWorkflow", "orders")
    ]


@pytest.mark.parametrize(
    "authorization",
    [None, "", "Bearer", "Bearer wrong", f"Basic {TOKEN}", f"Bearer {TOKEN}x", TOKEN],
)
@pytest.mark.parametrize("media", [PROTOBUF, JSON])
def test_missing_or_wrong_token_gets_401(
    guarded: str, store: Store, authorization: str | None, media: dict[str, str]
) -> None:
    body = request_body(valid_span(1))
    content = (
        body.SerializeToString()
        if media is PROTOBUF
        else json.dumps({"resourceSpans": []}).encode()
    )
    headers = dict(media)
    if authorization is not None:
        headers["Authorization"] = authorization
    response = httpx.post(f"{guarded}/v1/traces", content=content, headers=headers)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.headers["content-type"] == media["Content-Type"]
    assert rpc_status(response).code == UNAUTHENTICATED
    assert count(store) == 0
    headers["Authorization"] = f"Bearer {TOKEN}"
    assert httpx.post(f"{guarded}/v1/traces", content=content, headers=headers).status_code == 200


def test_the_collector_reads_the_token_file_and_variables(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tracer.cli import _otlp_token

    token_file = tmp_path / "otlp-token"
    token_file.write_text(f"{TOKEN}\n")
    monkeypatch.setenv("TEMPORAL_TRACER_OTLP_TOKEN", "from-the-environment")
    assert _otlp_token(token_file) == TOKEN  # the file wins
    assert _otlp_token(None) == "from-the-environment"
    token_file.write_text("two words\n")
    with pytest.raises(ValueError, match="one token"):
        _otlp_token(token_file)
    with pytest.raises(ValueError, match="No such file"):
        _otlp_token(tmp_path / "missing")


def _attribute(key: str, value: str) -> dict[str, object]:
    return {"key": key, "value": {"stringValue": value}}


def test_span_limits_cut_values_and_count_what_they_drop(store: Store) -> None:
    """OpenTelemetry's default limits (128 attributes, events and links) and a 4096
    character value limit: what is dropped is added to the sender's own dropped counts."""
    request = request_body(valid_span(1))
    span = request.resource_spans[0].scope_spans[0].spans[0]
    span.attributes.add(key="big", value=AnyValue(string_value="x" * 2 * 1024 * 1024))
    for index in range(200):
        span.attributes.add(key=f"a{index:03d}", value=AnyValue(string_value="v"))
    span.dropped_attributes_count = 5
    for index in range(150):
        event = span.events.add(name="e" * 5000, time_unix_nano=1_700_000_000_000_000_000)
        for attribute in range(3 if index else 140):
            event.attributes.add(key=f"k{attribute}", value=AnyValue(string_value="y" * 4500))
    for index in range(140):
        link = span.links.add(trace_id=bytes(15) + b"\x01", span_id=(index + 1).to_bytes(8, "big"))
        link.trace_state = "s" * 5000
    span.status.message = "m" * 10_000
    request.resource_spans[0].resource.attributes.add(
        key="host.note", value=AnyValue(string_value="r" * 100_000)
    )
    with serve(create_receiver_app(store)) as url:
        response = httpx.post(
            f"{url}/v1/traces", content=request.SerializeToString(), headers=PROTOBUF
        )
    assert response.status_code == 200, response.text
    (row,) = every_span(store)
    attributes = json.loads(row.attributes)
    limits = DEFAULT_SPAN_LIMITS
    assert len(attributes) == limits.attribute_count == 128
    assert attributes["big"] == {"stringValue": "x" * 4096}
    # 2 lifted + big + 200 others = 203 keys; 128 kept; the sender had dropped 5 already.
    assert row.dropped_attributes_count == 203 - 128 + 5
    events = json.loads(row.events)
    assert len(events) == 128 and row.dropped_events_count == 150 - 128
    assert len(events[0]["name"]) == 4096
    assert len(events[0]["attributes"]) == 128 and events[0]["droppedAttributesCount"] == 12
    assert all(len(v["stringValue"]) == 4096 for v in events[0]["attributes"].values())
    links = json.loads(row.links)
    assert len(links) == 128 and row.dropped_links_count == 140 - 128
    assert len(links[0]["traceState"]) == 4096
    assert len(row.status_message or "") == 4096
    assert len(json.loads(row.resource)["host.note"]["stringValue"]) == 4096
    stored_bytes = len(row.attributes) + len(row.events) + len(row.links) + len(row.resource)
    assert stored_bytes < request.ByteSize() * 0.6


def test_span_limits_follow_opentelemetry_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    assert SpanLimits.from_env({}) == DEFAULT_SPAN_LIMITS
    limits = SpanLimits.from_env(
        {
            "OTEL_ATTRIBUTE_COUNT_LIMIT": "7",
            "OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT": "3",
            "OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT": "10",
            "OTEL_SPAN_EVENT_COUNT_LIMIT": "2",
            "OTEL_SPAN_LINK_COUNT_LIMIT": "1",
        }
    )
    assert limits == SpanLimits(
        attribute_count=3,  # the span-specific variable wins over the general one
        attribute_value_length=10,
        event_count=2,
        link_count=1,
        event_attribute_count=7,  # the general one applies where nothing is more specific
        link_attribute_count=7,
    )
    with pytest.raises(ValueError, match="OTEL_SPAN_EVENT_COUNT_LIMIT"):
        SpanLimits.from_env({"OTEL_SPAN_EVENT_COUNT_LIMIT": "many"})
    # The collector takes them from its environment.
    monkeypatch.setenv("OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT", "64")
    assert ServeSettings().span_limits.attribute_value_length == 64


def test_huge_spans_leave_the_tree_page_small_and_fast(store: Store) -> None:
    """Before: eleven 7 MiB spans on one workflow made its tree page 89.5 MB and 6.9 s.
    Now the page carries no span, and one node's detail keeps 4 KiB per value."""
    fill(store)
    with serve_web(create_app(store)) as ui, httpx.Client(base_url=ui) as web:
        before = web.get("/workflows/orders/order-1", headers={"Accept-Encoding": "identity"})
        assert before.status_code == 200
        with serve(create_receiver_app(store, token=TOKEN)) as otlp:
            for index in range(11):
                request = request_body(
                    valid_span(
                        100 + index,
                        attributes={
                            "temporal.namespace": "orders",
                            "temporal.workflow_id": "order-1",
                            "temporal.run_id": "run-order-1",
                            "payload": "p" * 7 * 1024 * 1024,
                        },
                    )
                )
                response = httpx.post(
                    f"{otlp}/v1/traces",
                    content=request.SerializeToString(),
                    headers={**PROTOBUF, "Authorization": f"Bearer {TOKEN}"},
                    timeout=30,
                )
                assert response.status_code == 200
        began = time.perf_counter()
        after = web.get("/workflows/orders/order-1", headers={"Accept-Encoding": "identity"})
        assert time.perf_counter() - began < 1
        assert len(after.content) == len(before.content) < 300 * 1024
        began = time.perf_counter()
        detail = web.get("/api/workflows/orders/order-1/nodes/0")
        assert time.perf_counter() - began < 1
        spans = detail.json()["node"]["spans"]
        assert len(spans) == 12  # the fixture's own span and the eleven
        assert len(detail.content) < 200 * 1024
        assert all(len(s["attributes"].get("payload", "")) <= 4096 for s in spans)


def test_web_app_and_receiver_share_nothing(store: Store) -> None:
    """The UI's port does not take spans: only the receiver's does."""
    with serve_web(create_app(store)) as ui:
        body = request_body(valid_span(1)).SerializeToString()
        response = httpx.post(f"{ui}/v1/traces", content=body, headers=PROTOBUF)
    assert response.status_code in (404, 405)
    assert count(store) == 0
