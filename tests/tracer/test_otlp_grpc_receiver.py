"""The OTLP/gRPC receiver, driven by the standard gRPC exporter and by a raw gRPC client."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import grpc
import pytest
from google.rpc.error_details_pb2 import RetryInfo  # type: ignore[import-untyped]
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2_grpc import TraceServiceStub
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans
from opentelemetry.proto.trace.v1.trace_pb2 import Span as OtlpSpan
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from sqlalchemy import event, func, select

from tracer.collector import ServeSettings, run_collector
from tracer.db import Span, create_db_engine, upgrade_database
from tracer.devserver import DevServer, free_port
from tracer.ingest import GrpcReceiver
from tracer.store import Store


@dataclass
class Running:
    receiver: GrpcReceiver
    store: Store

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.receiver.port}"


@pytest.fixture(scope="module")
async def grpc_receiver(module_store: Store) -> AsyncIterator[Running]:
    """One receiver per module and database; tests keep to trace ids of their own."""
    receiver = GrpcReceiver(module_store, "127.0.0.1", free_port(), max_message_bytes=64 * 1024)
    await receiver.start()
    try:
        yield Running(receiver, module_store)
    finally:
        await receiver.stop()


def _stored(store: Store, trace_id: int) -> int:
    with store.session() as session:
        return (
            session.scalar(
                select(func.count()).select_from(Span).where(Span.trace_id == f"{trace_id:032x}")
            )
            or 0
        )


def _request(trace_id: int, spans: int, *, size: int = 0, bad: int = 0) -> Any:
    request = ExportTraceServiceRequest()
    scope = ScopeSpans()
    for index in range(spans + bad):
        span = OtlpSpan(
            trace_id=trace_id.to_bytes(16, "big") if index < spans else bytes(16),
            span_id=(index + 1).to_bytes(8, "big"),
            name="raw" + "x" * size,
            start_time_unix_nano=1_700_000_000_000_000_000,
            end_time_unix_nano=1_700_000_000_500_000_000,
        )
        scope.spans.append(span)
    request.resource_spans.append(ResourceSpans(scope_spans=[scope]))
    return request


async def test_a_standard_exporter_configured_by_the_environment_delivers(
    grpc_receiver: Running, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://{grpc_receiver.target}")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip")
    exporter = OTLPSpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("grpc-test")

    def emit() -> int:
        with tracer.start_as_current_span("parent") as parent:
            for index in range(3):
                with tracer.start_as_current_span(f"child-{index}"):
                    pass
        provider.shutdown()
        return parent.get_span_context().trace_id

    trace_id = await asyncio.to_thread(emit)
    assert _stored(grpc_receiver.store, trace_id) == 4


async def test_partial_success_and_idempotence(grpc_receiver: Running) -> None:
    trace_id = random.getrandbits(127) | 1
    async with grpc.aio.insecure_channel(grpc_receiver.target) as channel:
        stub = TraceServiceStub(channel)
        first = await stub.Export(_request(trace_id, 2, bad=1))
        again = await stub.Export(_request(trace_id, 2))
    assert first.partial_success.rejected_spans == 1
    assert "trace id is all zeros" in first.partial_success.error_message
    assert not again.HasField("partial_success")
    assert _stored(grpc_receiver.store, trace_id) == 2  # the retried export stored nothing new


async def test_a_message_over_the_limit_is_refused(grpc_receiver: Running) -> None:
    trace_id = random.getrandbits(127) | 1
    async with grpc.aio.insecure_channel(grpc_receiver.target) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await TraceServiceStub(channel).Export(_request(trace_id, 2, size=80 * 1024))
    assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert _stored(grpc_receiver.store, trace_id) == 0


async def test_a_gzipped_bomb_is_refused_by_its_decompressed_size(grpc_receiver: Running) -> None:
    trace_id = random.getrandbits(127) | 1
    async with grpc.aio.insecure_channel(
        grpc_receiver.target, compression=grpc.Compression.Gzip
    ) as channel:
        request = _request(trace_id, 1, size=1024 * 1024)  # compresses to a few KB
        assert len(request.SerializeToString()) > 1024 * 1024
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await TraceServiceStub(channel).Export(request)
    assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


@pytest.fixture
def store_that_cannot_commit(tmp_path: Any) -> Iterator[Store]:
    engine = create_db_engine(f"sqlite:///{tmp_path / 'tracer.db'}")
    upgrade_database(engine)
    engine.dispose()

    def read_only(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.execute("PRAGMA query_only = ON")

    event.listen(engine, "connect", read_only)
    try:
        yield Store(engine)
    finally:
        engine.dispose()


async def test_overload_and_an_unwritable_store_ask_the_exporter_to_retry(
    store_that_cannot_commit: Store, module_store: Store
) -> None:
    def retry_delay(error: grpc.aio.AioRpcError) -> float:
        raw = dict(error.trailing_metadata() or ())["google.rpc.retryinfo-bin"]
        info = RetryInfo()
        info.ParseFromString(raw)
        return float(info.retry_delay.seconds)

    busy = GrpcReceiver(module_store, "127.0.0.1", free_port(), max_pending=0)
    stuck = GrpcReceiver(store_that_cannot_commit, "127.0.0.1", free_port())
    await busy.start()
    await stuck.start()
    try:
        for receiver, code in (
            (busy, grpc.StatusCode.RESOURCE_EXHAUSTED),
            (stuck, grpc.StatusCode.UNAVAILABLE),
        ):
            async with grpc.aio.insecure_channel(f"127.0.0.1:{receiver.port}") as channel:
                with pytest.raises(grpc.aio.AioRpcError) as refused:
                    await TraceServiceStub(channel).Export(_request(7, 1))
            assert refused.value.code() == code
            assert retry_delay(refused.value) >= 1
    finally:
        await busy.stop()
        await stuck.stop()


async def test_serve_runs_the_grpc_receiver_on_its_flag(
    temporal_server: DevServer, tmp_path: Any
) -> None:
    settings = ServeSettings(
        db_url=f"sqlite:///{tmp_path / 'tracer.db'}",
        namespaces=["orders"],
        temporal_address=temporal_server.address,
        port=free_port(),
        otlp_port=free_port(),
        otlp_grpc_port=free_port(),
    )
    async with run_collector(settings) as collector:
        assert collector.otlp_grpc_url == f"http://127.0.0.1:{settings.otlp_grpc_port}"
        trace_id = random.getrandbits(127) | 1
        async with grpc.aio.insecure_channel(f"127.0.0.1:{settings.otlp_grpc_port}") as channel:
            await TraceServiceStub(channel).Export(_request(trace_id, 3))
        assert _stored(collector.store, trace_id) == 3


async def test_with_a_token_only_exporters_that_carry_it_get_in(
    module_store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    receiver = GrpcReceiver(module_store, "127.0.0.1", free_port(), token="s3cret-token")
    await receiver.start()
    try:
        trace_id = random.getrandbits(127) | 1
        async with grpc.aio.insecure_channel(f"127.0.0.1:{receiver.port}") as channel:
            stub = TraceServiceStub(channel)
            for metadata in ((), (("authorization", "Bearer wrong"),)):
                with pytest.raises(grpc.aio.AioRpcError) as refused:
                    await stub.Export(_request(trace_id, 1), metadata=metadata)
                assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert _stored(module_store, trace_id) == 0
        # A standard exporter, configured only by the environment, carries it.
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://127.0.0.1:{receiver.port}")
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", "authorization=Bearer%20s3cret-token")
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter()))

        def emit() -> int:
            with provider.get_tracer("grpc-test").start_as_current_span("with-token") as span:
                pass
            provider.shutdown()
            return span.get_span_context().trace_id

        assert _stored(module_store, await asyncio.to_thread(emit)) == 1
    finally:
        await receiver.stop()
