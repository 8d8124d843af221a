"""The OTLP/HTTP receiver, served for real by uvicorn over a migrated store.

What an exporter sees (status, content type, body) and what lands in the ``spans`` table,
on SQLite and on PostgreSQL. One receiver serves the whole module per database; each test
sends spans under a trace id of its own and looks only at those, so tests stay apart.
"""

from __future__ import annotations

import base64
import gzip
import json
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import uvicorn
from google.protobuf import json_format
from google.rpc import status_pb2  # type: ignore[import-untyped]
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from sqlalchemy import func, select
from starlette.applications import Starlette

from tracer.db import Span
from tracer.devserver import free_port
from tracer.ingest import BodyTooLargeError, create_receiver_app, decompress_gzip
from tracer.store import Store

PROTOBUF = {"Content-Type": "application/x-protobuf"}
JSON = {"Content-Type": "application/json"}
LIMIT = 64 * 1024  # the receivers under test accept bodies up to this size

SPAN_HEX = "eee19b7ec3c1b174"
PARENT_HEX = "eee19b7ec3c1b173"


@contextmanager
def serve(app: Starlette) -> Iterator[str]:
    """Run ``app`` with uvicorn in a thread on a free port; yield its base URL."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "receiver did not start"
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture(scope="module")
def receiver(module_store: Store) -> Iterator[str]:
    """The receiver with a 64 KiB body limit over the conftest's shared store, started once
    per module and database."""
    with serve(create_receiver_app(module_store, max_body_bytes=LIMIT)) as url:
        yield url


@pytest.fixture(scope="module")
def client(receiver: str) -> Iterator[httpx.Client]:
    """An HTTP client on the receiver."""
    with httpx.Client(base_url=receiver, timeout=10) as http:
        yield http


@dataclass(frozen=True)
class Trace:
    """A trace id of one test's own: the spans it sends, and finds in the shared store."""

    store: Store
    trace_id: bytes

    @property
    def hex(self) -> str:
        """The trace id as OTLP/JSON and the ``spans`` table write it."""
        return self.trace_id.hex()

    def span(self, n: int = 1, **overrides: Any) -> dict[str, Any]:
        """:func:`valid_span` in this trace."""
        return valid_span(n, **{"trace_id": self.trace_id, **overrides})

    def stored(self) -> list[Span]:
        """This trace's stored spans, oldest first."""
        return stored(self.store, self.hex)


@pytest.fixture
def own_trace(module_store: Store) -> Trace:
    """A fresh trace id for this test."""
    return Trace(module_store, os.urandom(16))


def stored(store: Store, trace_hex: str) -> list[Span]:
    """The stored spans of one trace, oldest first."""
    with store.session() as session:
        query = select(Span).where(Span.trace_id == trace_hex).order_by(Span.id)
        return list(session.scalars(query))


def count(store: Store) -> int:
    """How many spans are stored, by every test so far (compare before and after)."""
    with store.session() as session:
        return int(session.scalar(select(func.count()).select_from(Span)) or 0)


def request_body(
    *spans: dict[str, Any], service: str = "orders-worker"
) -> ExportTraceServiceRequest:
    """An export request with one resource and the given spans (OTLP field names)."""
    request = ExportTraceServiceRequest()
    resource_spans = request.resource_spans.add()
    resource_spans.resource.attributes.add(key="service.name", value=AnyValue(string_value=service))
    scope = resource_spans.scope_spans.add()
    for fields in spans:
        span = scope.spans.add()
        attributes = fields.pop("attributes", {})
        for name, value in fields.items():
            setattr(span, name, value)
        for key, value in attributes.items():
            span.attributes.add(key=key, value=AnyValue(string_value=value))
    return request


def valid_span(n: int = 1, **overrides: Any) -> dict[str, Any]:
    """The fields of a valid span whose span id ends in ``n`` (a new trace id unless one
    is given)."""
    fields: dict[str, Any] = {
        "trace_id": os.urandom(16),
        "span_id": n.to_bytes(8, "big"),
        "name": f"RunActivity:step{n}",
        "start_time_unix_nano": 1_700_000_000_000_000_000,
        "end_time_unix_nano": 1_700_000_000_500_000_000,
        "attributes": {"temporal.namespace": "orders", "temporal.workflow_id": f"order-{n}"},
    }
    fields.update(overrides)
    return fields


def assert_still_serving(client: httpx.Client, store: Store) -> None:
    """A valid export after whatever happened before is answered and stored."""
    before = count(store)
    span_id = os.urandom(8)
    body = request_body(valid_span(span_id=span_id)).SerializeToString()
    response = client.post("/v1/traces", content=body, headers=PROTOBUF)
    assert response.status_code == 200
    assert count(store) == before + 1


def rejected_spans(response: httpx.Response) -> int:
    """``partial_success.rejected_spans`` of a protobuf export response."""
    return ExportTraceServiceResponse.FromString(response.content).partial_success.rejected_spans


def rpc_status(response: httpx.Response) -> Any:
    """The ``google.rpc.Status`` error body, decoded per the response's content type."""
    if response.headers["content-type"] == "application/x-protobuf":
        return status_pb2.Status.FromString(response.content)
    return json_format.Parse(response.text, status_pb2.Status())


# --- the happy paths --------------------------------------------------------------------


def test_standard_exporter_with_only_the_endpoint_variable(
    receiver: str, module_store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An ``OTLPSpanExporter()`` configured by ``OTEL_EXPORTER_OTLP_ENDPOINT`` alone
    delivers spans with their Temporal identity lifted into columns."""
    for name in list(os.environ):
        if name.startswith("OTEL_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver)
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "payments-worker"}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("test")
    with (
        tracer.start_as_current_span(
            "StartNexusOperation:payments/charge",
            attributes={
                "temporal.namespace": "orders",
                "temporal.workflow_id": "order-1",
                "temporal.run_id": "run-1",
                "temporal.nexus.request_id": "req-nexus",
            },
        ) as parent,
        tracer.start_as_current_span(
            "RunStartNexusOperationHandler:payments/charge",
            attributes={"temporal.namespace": "payments", "temporal.request_id": "req-2"},
        ) as child,
    ):
        child.set_status(trace.Status(trace.StatusCode.ERROR, "declined"))
    provider.shutdown()

    exporter = OTLPSpanExporter()
    assert exporter.export(memory.get_finished_spans()) == SpanExportResult.SUCCESS
    exporter.shutdown()

    context = parent.get_span_context()
    rows = {row.name: row for row in stored(module_store, f"{context.trace_id:032x}")}
    assert set(rows) == {
        "StartNexusOperation:payments/charge",
        "RunStartNexusOperationHandler:payments/charge",
    }
    caller = rows["StartNexusOperation:payments/charge"]
    handler = rows["RunStartNexusOperationHandler:payments/charge"]
    assert caller.trace_id == f"{context.trace_id:032x}"
    assert caller.span_id == f"{context.span_id:016x}"
    assert caller.parent_span_id is None
    assert handler.parent_span_id == caller.span_id
    assert handler.trace_id == caller.trace_id
    assert (caller.namespace, caller.workflow_id, caller.run_id, caller.request_id) == (
        "orders",
        "order-1",
        "run-1",
        "req-nexus",
    )
    assert (handler.namespace, handler.request_id, handler.workflow_id) == (
        "payments",
        "req-2",
        None,
    )
    assert caller.service_name == handler.service_name == "payments-worker"
    assert handler.status_code == 2 and handler.status_message == "declined"
    assert caller.kind == 1  # SPAN_KIND_INTERNAL in OTLP numbering
    assert caller.end_time_unix_nano >= caller.start_time_unix_nano > 0
    assert json.loads(caller.attributes)["temporal.run_id"] == {"stringValue": "run-1"}
    resource = json.loads(caller.resource)
    assert resource["service.name"] == {"stringValue": "payments-worker"}
    assert caller.received_at is not None and caller.received_at.tzinfo is not None


def test_json_body_with_hex_ids_and_unknown_fields(client: httpx.Client, own_trace: Trace) -> None:
    """OTLP/JSON: hex ids, lowerCamelCase, string int64s, unknown fields ignored; the
    answer is JSON too."""
    document = {
        "resourceSpans": [
            {
                "resource": {
                    "attributes": [{"key": "service.name", "value": {"stringValue": "web"}}],
                    "someFutureField": 1,
                },
                "scopeSpans": [
                    {
                        "scope": {"name": "manual"},
                        "spans": [
                            {
                                "traceId": own_trace.hex,
                                "spanId": SPAN_HEX,
                                "parentSpanId": PARENT_HEX,
                                "name": "POST /charge",
                                "kind": 3,
                                "startTimeUnixNano": "1700000000000000000",
                                "endTimeUnixNano": 1700000000250000000,
                                "attributes": [
                                    {"key": "temporal.request_id", "value": {"stringValue": "r1"}},
                                    {"key": "http.status", "value": {"intValue": "200"}},
                                    {"key": "ratio", "value": {"doubleValue": 0.5}},
                                ],
                                "events": [{"timeUnixNano": "1700000000100000000", "name": "e"}],
                                "links": [{"traceId": own_trace.hex, "spanId": PARENT_HEX}],
                                "status": {"code": 1},
                                "notAnOtlpField": {"nested": True},
                            }
                        ],
                    }
                ],
            }
        ]
    }
    response = client.post("/v1/traces", content=json.dumps(document), headers=JSON)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {}
    (row,) = own_trace.stored()
    assert (row.trace_id, row.span_id, row.parent_span_id) == (own_trace.hex, SPAN_HEX, PARENT_HEX)
    assert (row.name, row.kind, row.service_name, row.request_id) == (
        "POST /charge",
        3,
        "web",
        "r1",
    )
    assert (row.start_time_unix_nano, row.end_time_unix_nano) == (
        1_700_000_000_000_000_000,
        1_700_000_000_250_000_000,
    )
    assert row.status_code == 1
    attributes = json.loads(row.attributes)
    assert attributes["http.status"] == {"intValue": "200"}
    assert attributes["ratio"] == {"doubleValue": 0.5}
    assert json.loads(row.events)[0]["name"] == "e"
    assert json.loads(row.links)[0]["spanId"] == PARENT_HEX


@pytest.mark.parametrize("media", ["protobuf", "json"])
def test_gzip_bodies(client: httpx.Client, own_trace: Trace, media: str) -> None:
    """``Content-Encoding: gzip`` bodies in either encoding are decompressed and stored."""
    request = request_body(own_trace.span(1), own_trace.span(2))
    if media == "protobuf":
        body, headers = request.SerializeToString(), dict(PROTOBUF)
    else:
        document = json_format.MessageToDict(request)
        for span in document["resourceSpans"][0]["scopeSpans"][0]["spans"]:
            for key in ("traceId", "spanId"):
                span[key] = base64.b64decode(span[key]).hex()
        body, headers = json.dumps(document).encode(), dict(JSON)
    headers["Content-Encoding"] = "gzip"
    response = client.post("/v1/traces", content=gzip.compress(body), headers=headers)
    assert response.status_code == 200
    assert response.headers["content-type"] == headers["Content-Type"]
    assert sorted(row.workflow_id or "" for row in own_trace.stored()) == ["order-1", "order-2"]


# --- partial success ---------------------------------------------------------------------


def test_invalid_spans_are_rejected_one_by_one(
    client: httpx.Client, module_store: Store, own_trace: Trace
) -> None:
    """Bad ids, all-zero ids, end before start, a missing start time: those spans are
    counted in ``partial_success``; the valid ones are stored."""
    request = request_body(
        own_trace.span(1),
        own_trace.span(2, trace_id=b"\x01" * 15),
        own_trace.span(3, trace_id=bytes(16)),
        own_trace.span(4, span_id=bytes(8)),
        own_trace.span(5, parent_span_id=b"\x01\x02"),
        own_trace.span(6, end_time_unix_nano=1),
        own_trace.span(7, start_time_unix_nano=0, end_time_unix_nano=0),
        own_trace.span(8),
    )
    before = count(module_store)
    response = client.post("/v1/traces", content=request.SerializeToString(), headers=PROTOBUF)
    assert response.status_code == 200
    partial = ExportTraceServiceResponse.FromString(response.content).partial_success
    assert partial.rejected_spans == 6
    for reason in ("trace id must be 16 bytes", "trace id is all zeros", "span id is all zeros"):
        assert reason in partial.error_message
    assert [row.name for row in own_trace.stored()] == ["RunActivity:step1", "RunActivity:step8"]
    assert count(module_store) == before + 2


def test_json_partial_success_with_a_span_id_that_is_not_hex(
    client: httpx.Client, own_trace: Trace
) -> None:
    """In OTLP/JSON an id that is not hex rejects its span only."""
    good = {
        "traceId": own_trace.hex,
        "spanId": SPAN_HEX,
        "name": "ok",
        "startTimeUnixNano": "1",
        "endTimeUnixNano": "2",
    }
    bad = {**good, "spanId": "not-hex-at-all!!", "name": "bad"}
    document = {"resourceSpans": [{"scopeSpans": [{"spans": [good, bad]}]}]}
    response = client.post("/v1/traces", json=document)
    assert response.status_code == 200
    assert response.json()["partialSuccess"]["rejectedSpans"] == "1"
    assert "span id must be 8 bytes" in response.json()["partialSuccess"]["errorMessage"]
    assert [row.name for row in own_trace.stored()] == ["ok"]


# --- refusals ---------------------------------------------------------------------------

MALFORMED = [
    pytest.param(PROTOBUF, b"\xff\xff\xff\xff\x0f", id="protobuf-garbage"),
    pytest.param(PROTOBUF, b"\x0a\x05\x12\x03", id="protobuf-truncated"),
    pytest.param(JSON, b"{not json", id="json-syntax"),
    pytest.param(JSON, b"[1, 2]", id="json-not-an-object"),
    pytest.param(JSON, b'{"resourceSpans": "nope"}', id="json-wrong-type"),
    pytest.param(JSON, b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"name": 5}]}]}]}',
                 id="json-wrong-field-type"),
    pytest.param(JSON, b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"name": "\\ud800"}]}]}]}',
                 id="json-lone-surrogate"),
    pytest.param(JSON, b"\xff\xfe{}", id="json-not-utf8"),
    pytest.param({**PROTOBUF, "Content-Encoding": "gzip"}, b"not gzip", id="gzip-garbage"),
    pytest.param({**PROTOBUF, "Content-Encoding": "gzip"}, gzip.compress(b"x" * 100)[:-12],
                 id="gzip-truncated"),
]  # fmt: skip


@pytest.mark.parametrize(("headers", "body"), MALFORMED)
def test_malformed_bodies_get_400_and_store_nothing(
    client: httpx.Client, module_store: Store, headers: dict[str, str], body: bytes
) -> None:
    """Bad data: 400 with a ``google.rpc.Status`` in the request's content type."""
    before = count(module_store)
    response = client.post("/v1/traces", content=body, headers=headers)
    assert response.status_code == 400
    assert response.headers["content-type"] == headers["Content-Type"]
    status = rpc_status(response)
    assert status.code == 3 and status.message  # INVALID_ARGUMENT, with a reason
    assert count(module_store) == before
    assert_still_serving(client, module_store)


def test_bodies_over_the_limit_get_413(client: httpx.Client, module_store: Store) -> None:
    """Too large as sent (with or without Content-Length) or once decompressed: 413,
    nothing stored, the receiver still serving."""
    spans = [valid_span(n, name="x" * 900) for n in range(1, 200)]
    body = request_body(*spans).SerializeToString()
    assert len(body) > LIMIT
    before = count(module_store)

    response = client.post("/v1/traces", content=body, headers=PROTOBUF)
    assert response.status_code == 413
    assert rpc_status(response).code == 8  # RESOURCE_EXHAUSTED

    def chunks() -> Iterator[bytes]:  # chunked transfer: no Content-Length to trust
        for start in range(0, len(body), 4096):
            yield body[start : start + 4096]

    response = client.post("/v1/traces", content=chunks(), headers=PROTOBUF)
    assert response.status_code == 413

    # Compressed it is small, decompressed it is not.
    compressed = gzip.compress(body)
    assert len(compressed) < LIMIT
    response = client.post(
        "/v1/traces", content=compressed, headers={**PROTOBUF, "Content-Encoding": "gzip"}
    )
    assert response.status_code == 413
    assert count(module_store) == before
    assert_still_serving(client, module_store)


def test_gzip_bomb_gets_413_without_expanding(client: httpx.Client, module_store: Store) -> None:
    """32 MiB of zeros in ~32 KiB of gzip: refused as soon as the output passes the limit."""
    bomb = gzip.compress(bytes(32 * 1024 * 1024), compresslevel=9)
    assert len(bomb) < LIMIT
    before = count(module_store)
    started = time.monotonic()
    response = client.post("/v1/traces", content=bomb, headers={**JSON, "Content-Encoding": "gzip"})
    assert response.status_code == 413
    assert response.headers["content-type"] == "application/json"
    assert "decompressed body exceeds" in response.json()["message"]
    assert time.monotonic() - started < 2
    assert count(module_store) == before
    assert_still_serving(client, module_store)


def test_decompression_stops_at_the_limit() -> None:
    """The gzip reader produces at most limit + 1 bytes, however large the stream."""
    data = gzip.compress(bytes(10_000))
    assert decompress_gzip(data, 10_000) == bytes(10_000)
    with pytest.raises(BodyTooLargeError):
        decompress_gzip(data, 9_999)


@pytest.mark.parametrize(
    "headers",
    [
        {"Content-Type": "text/plain"},
        {"Content-Type": "application/xml"},
        {},
        {**PROTOBUF, "Content-Encoding": "br"},
    ],
    ids=["text", "xml", "none", "brotli"],
)
def test_unknown_content_type_or_encoding_gets_415(
    client: httpx.Client, module_store: Store, headers: dict[str, str]
) -> None:
    """Only protobuf and JSON, plain or gzip, are accepted."""
    body = request_body(valid_span(1)).SerializeToString()
    before = count(module_store)
    response = client.post("/v1/traces", content=body, headers=headers)
    assert response.status_code == 415
    assert count(module_store) == before


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "HEAD", "TRACE", "FROB"])
def test_wrong_method_gets_405(client: httpx.Client, method: str) -> None:
    """``/v1/traces`` only takes POST, and says so."""
    response = client.request(method, "/v1/traces", headers=JSON)
    assert response.status_code == 405
    assert response.headers["allow"] == "POST"
    if method != "HEAD":  # a HEAD answer has no body
        assert response.json()["message"].startswith(f"method {method} not allowed")


def test_protobuf_json_charset_parameter_is_accepted(
    client: httpx.Client, module_store: Store
) -> None:
    """Media type parameters (``; charset=utf-8``) don't change the encoding."""
    document = {"resourceSpans": []}
    headers = {"Content-Type": "application/json; charset=utf-8"}
    response = client.post("/v1/traces", content=json.dumps(document), headers=headers)
    assert response.status_code == 200
    assert response.json() == {}


# --- overload ---------------------------------------------------------------------------


def test_overload_gets_503_with_retry_after(module_store: Store) -> None:
    """With no room for another request the receiver answers 503 + Retry-After at once."""
    body = request_body(valid_span(1)).SerializeToString()
    before = count(module_store)
    with (
        serve(create_receiver_app(module_store, max_pending=0)) as url,
        httpx.Client(base_url=url, timeout=10) as http,
    ):
        response = http.post("/v1/traces", content=body, headers=PROTOBUF)
        assert response.status_code == 503
        assert int(response.headers["retry-after"]) >= 1
        assert rpc_status(response).code == 14  # UNAVAILABLE
    assert count(module_store) == before


def test_a_held_request_makes_the_next_one_wait(module_store: Store, own_trace: Trace) -> None:
    """One slot, taken by a request whose body is still arriving: the next request gets
    503; once the first completes, both it and a retry are stored."""
    app = create_receiver_app(module_store, max_pending=1)
    release = threading.Event()
    first_body = request_body(own_trace.span(1)).SerializeToString()

    def slow_body() -> Iterator[bytes]:
        yield first_body[:10]
        release.wait(10)
        yield first_body[10:]

    with serve(app) as url, httpx.Client(base_url=url, timeout=10) as http:
        result: dict[str, httpx.Response] = {}

        def post_slowly() -> None:
            with httpx.Client(base_url=url, timeout=10) as other:
                result["first"] = other.post("/v1/traces", content=slow_body(), headers=PROTOBUF)

        sender = threading.Thread(target=post_slowly)
        sender.start()
        deadline = time.monotonic() + 5
        while app.state.receiver.pending < 1:  # the first request holds the slot
            assert time.monotonic() < deadline
            time.sleep(0.01)
        second = request_body(own_trace.span(2)).SerializeToString()
        response = http.post("/v1/traces", content=second, headers=PROTOBUF)
        assert response.status_code == 503
        assert response.headers["retry-after"] == "1"
        release.set()
        sender.join(10)
        assert result["first"].status_code == 200
        assert http.post("/v1/traces", content=second, headers=PROTOBUF).status_code == 200
    names = sorted(row.name for row in own_trace.stored())
    assert names == ["RunActivity:step1", "RunActivity:step2"]


# --- generated bodies --------------------------------------------------------------------

_otlp_keys = st.sampled_from(
    ["resourceSpans", "scopeSpans", "spans", "traceId", "spanId", "parentSpanId", "name",
     "attributes", "key", "value", "stringValue", "intValue", "arrayValue", "values",
     "startTimeUnixNano", "endTimeUnixNano", "status", "code", "kind", "events", "links"]
)  # fmt: skip
_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(_otlp_keys | st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=30,
)


def test_generated_bodies_never_break_the_receiver(
    client: httpx.Client, module_store: Store
) -> None:
    """Random protobuf bytes, mutated valid requests and random JSON shaped like OTLP:
    the answer is 200 (what decoded is valid) or 400 (nothing stored), never a 5xx."""
    valid = request_body(valid_span(1), valid_span(2)).SerializeToString()

    def check(body: bytes, headers: dict[str, str]) -> None:
        before = count(module_store)
        response = client.post("/v1/traces", content=body, headers=headers)
        assert response.status_code in (200, 400), response.text
        assert response.headers["content-type"] == headers["Content-Type"]
        if response.status_code == 400:
            assert count(module_store) == before
        elif headers is PROTOBUF:
            ExportTraceServiceResponse.FromString(response.content)
        else:
            json_format.Parse(response.text, ExportTraceServiceResponse())

    # 75 examples on each database: the 150 this test always had, without doubling its time.
    @settings(
        max_examples=75,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture],
    )
    @given(
        raw=st.binary(max_size=200),
        cut=st.integers(0, len(valid)),
        flips=st.lists(st.tuples(st.integers(0, len(valid) - 1), st.integers(0, 255)),
                       max_size=4),
        document=st.dictionaries(_otlp_keys, _json_values, max_size=3),
    )  # fmt: skip
    def run(raw: bytes, cut: int, flips: list[tuple[int, int]], document: dict[str, Any]) -> None:
        check(raw, PROTOBUF)
        mutated = bytearray(valid[:cut])
        for index, byte in flips:
            if index < len(mutated):
                mutated[index] = byte
        check(bytes(mutated), PROTOBUF)
        check(json.dumps(document).encode(), JSON)
        check(json.dumps({"resourceSpans": [{"scopeSpans": [{"spans": [document]}]}]})
              .encode(), JSON)  # fmt: skip

    run()
    assert_still_serving(client, module_store)


def test_edge_values_fit_the_columns(client: httpx.Client, own_trace: Trace) -> None:
    """Over-long names and ids, NUL characters and times beyond int64 don't fail the batch
    (PostgreSQL would refuse them): they are trimmed, left out or rejected per span."""
    request = request_body(
        own_trace.span(1, name="n" * 5000 + "\x00"),
        own_trace.span(
            2, attributes={"temporal.workflow_id": "w" * 2000, "temporal.namespace": "a\x00b"}
        ),
        own_trace.span(3, end_time_unix_nano=2**64 - 1),
    )
    response = client.post("/v1/traces", content=request.SerializeToString(), headers=PROTOBUF)
    assert response.status_code == 200
    assert rejected_spans(response) == 1
    first, second = own_trace.stored()
    assert first.name == "n" * 1000
    assert second.workflow_id is None  # too long for the column; still in the attributes
    assert json.loads(second.attributes)["temporal.workflow_id"]["stringValue"] == "w" * 2000
    assert second.namespace == "a\ufffdb"


def test_same_spans_twice_are_stored_once(client: httpx.Client, own_trace: Trace) -> None:
    """A retried export, and a span repeated inside one export, module_store each span once."""
    body = request_body(own_trace.span(1), own_trace.span(2), own_trace.span(1)).SerializeToString()
    for _ in range(2):
        response = client.post("/v1/traces", content=body, headers=PROTOBUF)
        assert response.status_code == 200
        assert rejected_spans(response) == 0
    assert sorted(row.span_id for row in own_trace.stored()) == [
        (1).to_bytes(8, "big").hex(),
        (2).to_bytes(8, "big").hex(),
    ]
