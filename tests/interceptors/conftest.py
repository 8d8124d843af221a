"""Fixtures of the interceptor tests: in-memory span collection, per-module Nexus endpoints."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import pytest
from opentelemetry.sdk.trace import (
    ReadableSpan,
    SpanProcessor,
    SynchronousMultiSpanProcessor,
    TracerProvider,
)
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from temporalio.client import Client

from tests.conftest import unique
from tracer.devserver import DevServer, NexusEndpoint, create_nexus_endpoints


@dataclass
class Otel:
    provider: TracerProvider
    exporter: InMemorySpanExporter

    def spans(self) -> list[ReadableSpan]:
        return list(self.exporter.get_finished_spans())

    @classmethod
    def fresh(cls) -> Otel:
        exporter = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        return cls(provider, exporter)


@pytest.fixture
def otel() -> Otel:
    """A private tracer provider exporting synchronously into memory (never the global)."""
    return Otel.fresh()


class _WhileOpen(SpanProcessor):
    """Forwards ended spans while open: a processor cannot be taken off a provider."""

    def __init__(self, inner: SpanProcessor) -> None:
        self.inner: SpanProcessor | None = inner

    def on_end(self, span: ReadableSpan) -> None:
        if self.inner is not None:
            self.inner.on_end(span)


@contextmanager
def collecting(processors: SynchronousMultiSpanProcessor) -> Iterator[InMemorySpanExporter]:
    """Keep the spans the global provider ends inside the block."""
    exporter = InMemorySpanExporter()
    gate = _WhileOpen(SimpleSpanProcessor(exporter))
    processors.add_span_processor(gate)
    try:
        yield exporter
    finally:
        gate.inner = None


@dataclass(frozen=True)
class Endpoint:
    name: str
    namespace: str
    task_queue: str


async def create_endpoint(server: DevServer) -> Endpoint:
    """A new Nexus endpoint targeting a unique task queue in payments."""
    client = await Client.connect(server.address, namespace="default")
    endpoint = Endpoint(unique("tt-echo"), "payments", unique("tt-echo-tq"))
    await create_nexus_endpoints(
        client, [NexusEndpoint(endpoint.name, endpoint.namespace, endpoint.task_queue)]
    )
    return endpoint


@pytest.fixture(scope="module")
async def echo_endpoint(temporal_server: DevServer) -> Endpoint:
    """A Nexus endpoint of this module's own, targeting a unique task queue in payments."""
    return await create_endpoint(temporal_server)


def named(spans: Sequence[ReadableSpan], name: str) -> list[ReadableSpan]:
    return [span for span in spans if span.name == name]


def one(spans: Sequence[ReadableSpan], name: str) -> ReadableSpan:
    found = named(spans, name)
    assert len(found) == 1, f"{name}: {len(found)} spans; have {sorted(s.name for s in spans)}"
    return found[0]


def parent_id(span: ReadableSpan) -> int | None:
    return span.parent.span_id if span.parent is not None else None


def span_id(span: ReadableSpan) -> int:
    assert span.context is not None
    return span.context.span_id


def trace_id(span: ReadableSpan) -> int:
    assert span.context is not None
    return span.context.trace_id
