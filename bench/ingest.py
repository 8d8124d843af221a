"""Span ingest rate of the OTLP/HTTP and OTLP/gRPC receivers, beside a raw insert of the
same rows.

Each receiver runs in its own process (uvicorn, as ``temporal-tracer serve`` runs it) over a
fresh, migrated database; this process posts pre-encoded protobuf export requests of
``--batch`` spans each (like ``BatchSpanProcessor``'s default 512) with ``--clients``
concurrent HTTP clients. The spans look like the interceptors' (Temporal attributes,
parents). Then the same rows are inserted straight into another fresh database, one
transaction and one ``executemany`` per batch: with the store's own statement
(``insert_ignoring_duplicates``, what the receiver runs) and with the bare DB-API cursor.
Rounds alternate the modes; each figure is the median over rounds. Not a test.

    .venv/bin/python bench/ingest.py [--spans 51200] [--rounds 3]
        [--postgres-url postgresql+psycopg://user@host:port/db]

With ``--postgres-url`` the same runs also go to PostgreSQL, in scratch databases created
(and dropped) on that server.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from sqlalchemy import Engine, create_engine, func, select, text

from tracer.db import Span, create_db_engine, upgrade_database
from tracer.devserver import free_port
from tracer.ingest import parse_export_request, request_to_rows
from tracer.store import Store

__all__ = ["main"]

_COLUMNS = [
    "trace_id",
    "span_id",
    "parent_span_id",
    "name",
    "kind",
    "service_name",
    "start_time_unix_nano",
    "end_time_unix_nano",
    "status_code",
    "status_message",
    "namespace",
    "workflow_id",
    "run_id",
    "request_id",
    "attributes",
    "resource",
    "events",
    "links",
    "received_at",
]


def make_bodies(spans: int, batch: int) -> list[bytes]:
    """Protobuf export requests of ``batch`` spans each, shaped like the interceptors'.

    Args:
        spans: How many spans in all.
        batch: Spans per request.

    Returns:
        The serialized requests.
    """
    bodies = []
    base = time.time_ns()
    names = [
        "RunWorkflow:OrderWorkflow",
        "StartActivity:charge",
        "RunActivity:charge",
        "StartNexusOperation:payments/charge",
        "RunStartNexusOperationHandler:payments/charge",
    ]
    for first in range(0, spans, batch):
        request = ExportTraceServiceRequest()
        resource_spans = request.resource_spans.add()
        resource = resource_spans.resource.attributes
        resource.add(key="service.name", value=AnyValue(string_value="orders-worker"))
        resource.add(key="telemetry.sdk.language", value=AnyValue(string_value="python"))
        scope_spans = resource_spans.scope_spans.add()
        scope_spans.scope.name = "interceptors"
        trace_id = os.urandom(16)
        root = os.urandom(8)
        for i in range(first, min(first + batch, spans)):
            span = scope_spans.spans.add()
            span.trace_id = trace_id
            span.span_id = root if i == first else os.urandom(8)
            if i != first:
                span.parent_span_id = root
            span.name = names[i % len(names)]
            span.kind = 1 + i % 3
            span.start_time_unix_nano = base + i * 1000
            span.end_time_unix_nano = base + i * 1000 + 250_000
            attributes = span.attributes
            for key, value in (
                ("temporal.namespace", "orders"),
                ("temporal.workflow_id", f"order-{i // 8}"),
                ("temporal.run_id", str(uuid.UUID(int=i // 8))),
                ("temporal.workflow_type", "OrderWorkflow"),
                ("temporal.nexus.request_id", str(uuid.UUID(int=i))),
            ):
                attributes.add(key=key, value=AnyValue(string_value=value))
            attributes.add(key="temporal.attempt", value=AnyValue(int_value=1))
        bodies.append(request.SerializeToString())
    return bodies


@contextmanager
def scratch_database(kind: str, postgres_url: str | None) -> Iterator[str]:
    """A fresh, migrated database URL: a SQLite file, or a new database on the server."""
    if kind == "sqlite":
        with tempfile.TemporaryDirectory(prefix="tracer-bench-") as folder:
            url = f"sqlite:///{folder}/tracer.db"
            _migrate(url)
            yield url
        return
    assert postgres_url is not None
    name = f"tracer_bench_{uuid.uuid4().hex[:10]}"
    admin = create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        url = postgres_url.rsplit("/", 1)[0] + f"/{name}"
        _migrate(url)
        yield url
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
        admin.dispose()


def _migrate(url: str) -> None:
    engine = create_db_engine(url)
    upgrade_database(engine)
    engine.dispose()


def _count(engine: Engine) -> int:
    with engine.connect() as connection:
        return int(connection.execute(select(func.count()).select_from(Span)).scalar_one())


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux ``/proc``; 0 elsewhere)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextmanager
def receiver_process(db_url: str, protocol: str = "http") -> Iterator[tuple[str, int]]:
    """Run a receiver in a child process; yield its address and pid."""
    port = free_port()
    child = subprocess.Popen(
        [sys.executable, __file__, "--serve", db_url, "--port", str(port), "--protocol", protocol],
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if child.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the receiver process did not start") from None
                time.sleep(0.05)
        yield (f"http://127.0.0.1:{port}" if protocol == "http" else f"127.0.0.1:{port}"), child.pid
    finally:
        child.terminate()
        child.wait(timeout=10)


def _serve(db_url: str, port: int, protocol: str) -> None:
    import asyncio

    import uvicorn

    from tracer.ingest import GrpcReceiver, create_receiver_app

    engine = create_db_engine(db_url)
    if protocol == "http":
        app = create_receiver_app(Store(engine))
        uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)
        return

    async def serve_grpc() -> None:
        receiver = GrpcReceiver(Store(engine), "127.0.0.1", port)
        await receiver.start()
        await asyncio.Event().wait()

    asyncio.run(serve_grpc())


def export_all_grpc(target: str, bodies: Sequence[bytes], clients: int) -> tuple[float, int]:
    """Export every request over gRPC with ``clients`` concurrent channels; retry the
    codes the receiver asks to be retried.

    Returns:
        The wall time in seconds and how many refusals were retried.
    """
    import grpc
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2_grpc import TraceServiceStub

    retry = {grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.UNAVAILABLE}

    def send(share: Sequence[bytes]) -> int:
        retried = 0
        with grpc.insecure_channel(target) as channel:
            stub = TraceServiceStub(channel)
            for body in share:
                request = ExportTraceServiceRequest.FromString(body)
                while True:
                    try:
                        response = stub.Export(request, timeout=60)
                        break
                    except grpc.RpcError as err:
                        if err.code() not in retry:
                            raise
                        retried += 1
                        time.sleep(0.01)
                if response.HasField("partial_success"):
                    raise RuntimeError(f"export failed: {response.partial_success}")
        return retried

    shares = [bodies[i::clients] for i in range(clients)]
    retries = 0
    with ThreadPoolExecutor(clients) as pool:
        started = time.perf_counter()
        for retried in pool.map(send, shares):
            retries += retried
        elapsed = time.perf_counter() - started
    return elapsed, retries


def post_all(url: str, bodies: Sequence[bytes], clients: int) -> tuple[float, int]:
    """Post every body with ``clients`` concurrent HTTP clients; retry 503s.

    Returns:
        The wall time in seconds and how many 503 answers were retried.
    """
    retries = 0
    headers = {"Content-Type": "application/x-protobuf"}

    def send(share: Sequence[bytes]) -> int:
        retried = 0
        with httpx.Client(base_url=url, timeout=60) as client:
            for body in share:
                while True:
                    response = client.post("/v1/traces", content=body, headers=headers)
                    if response.status_code != 503:
                        break
                    retried += 1
                    time.sleep(0.01)
                if response.status_code != 200 or response.content:
                    raise RuntimeError(f"export failed: {response.status_code} {response.text}")
        return retried

    shares = [bodies[i::clients] for i in range(clients)]
    with ThreadPoolExecutor(clients) as pool:
        started = time.perf_counter()
        for retried in pool.map(send, shares):
            retries += retried
        elapsed = time.perf_counter() - started
    return elapsed, retries


def _decode(bodies: Sequence[bytes]) -> list[list[dict[str, Any]]]:
    now = datetime.now(UTC)
    return [request_to_rows(parse_export_request(b, "protobuf"), now).rows for b in bodies]


def raw_store_insert(
    engine: Engine, batches: Sequence[list[dict[str, Any]]]
) -> tuple[float, float]:
    """Insert each batch with the store's statement, one transaction each.

    Returns:
        Wall and CPU seconds.
    """
    store = Store(engine)
    started, cpu = time.perf_counter(), time.process_time()
    for rows in batches:
        store.save_spans(rows)
    return time.perf_counter() - started, time.process_time() - cpu


def raw_dbapi_insert(engine: Engine, batches: Sequence[list[dict[str, Any]]]) -> float:
    """Insert each batch with a bare DB-API ``executemany``, one transaction each; seconds."""
    sqlite = engine.dialect.name == "sqlite"
    marks = ", ".join("?" if sqlite else "%s" for _ in _COLUMNS)
    sql = f"INSERT INTO spans ({', '.join(_COLUMNS)}) VALUES ({marks}) ON CONFLICT DO NOTHING"
    stamp: Any = datetime.now(UTC).replace(tzinfo=None)
    if sqlite:
        stamp = stamp.isoformat(sep=" ")
    tuples = [
        [tuple(stamp if c == "received_at" else row[c] for c in _COLUMNS) for row in rows]
        for rows in batches
    ]
    connection = engine.raw_connection()
    try:
        started = time.perf_counter()
        for params in tuples:
            cursor = connection.cursor()
            cursor.executemany(sql, params)
            cursor.close()
            connection.commit()
        return time.perf_counter() - started
    finally:
        connection.close()


@dataclass
class Figures:
    """Spans per second of each mode, one value per round; ``*_cpu`` are spans per CPU
    second (of the receiver process, or of this one for the raw insert), steadier than wall
    time on a shared machine."""

    ingest: list[float] = field(default_factory=list)
    grpc: list[float] = field(default_factory=list)
    store: list[float] = field(default_factory=list)
    dbapi: list[float] = field(default_factory=list)
    ingest_cpu: list[float] = field(default_factory=list)
    grpc_cpu: list[float] = field(default_factory=list)
    store_cpu: list[float] = field(default_factory=list)
    retries: int = 0


def run(kind: str, args: argparse.Namespace) -> Figures:
    """Alternate the three modes for ``args.rounds`` rounds on one database kind."""
    figures = Figures()
    for round_number in range(1, args.rounds + 1):
        bodies = make_bodies(args.spans, args.batch)
        batches = _decode(bodies)
        spans = sum(len(rows) for rows in batches)
        with scratch_database(kind, args.postgres_url) as url:
            with receiver_process(url) as (base_url, pid):
                post_all(base_url, make_bodies(args.batch, args.batch), 1)  # warm up
                cpu = process_cpu_seconds(pid)
                elapsed, retries = post_all(base_url, bodies, args.clients)
                cpu = process_cpu_seconds(pid) - cpu
            engine = create_db_engine(url)
            stored = _count(engine) - args.batch
            engine.dispose()
        if stored != spans:
            raise RuntimeError(f"{kind}: {stored} spans stored, {spans} sent")
        figures.ingest.append(spans / elapsed)
        figures.ingest_cpu.append(spans / cpu if cpu else 0.0)
        figures.retries += retries
        with scratch_database(kind, args.postgres_url) as url:
            with receiver_process(url, "grpc") as (target, pid):
                export_all_grpc(target, make_bodies(args.batch, args.batch), 1)  # warm up
                cpu = process_cpu_seconds(pid)
                elapsed, retries = export_all_grpc(target, bodies, args.clients)
                cpu = process_cpu_seconds(pid) - cpu
            engine = create_db_engine(url)
            stored = _count(engine) - args.batch
            engine.dispose()
        if stored != spans:
            raise RuntimeError(f"{kind} gRPC: {stored} spans stored, {spans} sent")
        figures.grpc.append(spans / elapsed)
        figures.grpc_cpu.append(spans / cpu if cpu else 0.0)
        figures.retries += retries
        with scratch_database(kind, args.postgres_url) as url:
            engine = create_db_engine(url)
            wall, cpu = raw_store_insert(engine, batches)
            figures.store.append(spans / wall)
            figures.store_cpu.append(spans / cpu)
            engine.dispose()
        with scratch_database(kind, args.postgres_url) as url:
            engine = create_db_engine(url)
            figures.dbapi.append(spans / raw_dbapi_insert(engine, batches))
            engine.dispose()
        print(
            f"  {kind} round {round_number}: OTLP/HTTP {figures.ingest[-1]:,.0f} spans/s "
            f"({figures.ingest_cpu[-1]:,.0f} per receiver CPU s), OTLP/gRPC "
            f"{figures.grpc[-1]:,.0f} ({figures.grpc_cpu[-1]:,.0f} per CPU s), store insert "
            f"{figures.store[-1]:,.0f} ({figures.store_cpu[-1]:,.0f} per CPU s), "
            f"DB-API {figures.dbapi[-1]:,.0f}",
            flush=True,
        )
    return figures


def main() -> None:
    """Parse the command line, run the benchmark and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spans", type=int, default=51_200, help="spans per round")
    parser.add_argument("--batch", type=int, default=512, help="spans per export request")
    parser.add_argument("--clients", type=int, default=2, help="concurrent HTTP clients")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--postgres-url", help="also run on this PostgreSQL server")
    parser.add_argument("--serve", metavar="DB_URL", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--protocol", default="http", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        _serve(args.serve, args.port, args.protocol)
        return
    kinds = ["sqlite"] + (["postgresql"] if args.postgres_url else [])
    print(
        f"{args.spans:,} spans per round in requests of {args.batch}, {args.clients} clients, "
        f"{args.rounds} rounds, {os.cpu_count()} CPUs"
    )
    for kind in kinds:
        figures = run(kind, args)
        ingest = statistics.median(figures.ingest)
        store = statistics.median(figures.store)
        dbapi = statistics.median(figures.dbapi)
        print(
            f"{kind}: OTLP/HTTP ingest {ingest:,.0f} spans/s (median); raw insert with the "
            f"store's statement {store:,.0f} spans/s, bare DB-API executemany "
            f"{dbapi:,.0f} spans/s; ingest/raw = {ingest / store:.0%} "
            f"(of DB-API: {ingest / dbapi:.0%}); 503 retries: {figures.retries}"
        )
        grpc = statistics.median(figures.grpc)
        print(
            f"{kind}: OTLP/gRPC ingest {grpc:,.0f} spans/s (median); gRPC/HTTP {grpc / ingest:.2f}"
        )
        ingest_cpu = statistics.median(figures.ingest_cpu)
        grpc_cpu = statistics.median(figures.grpc_cpu)
        store_cpu = statistics.median(figures.store_cpu)
        print(
            f"{kind}, per CPU second: OTLP/HTTP receiver {ingest_cpu:,.0f} spans, OTLP/gRPC "
            f"receiver {grpc_cpu:,.0f} spans, store insert {store_cpu:,.0f} spans; "
            f"HTTP/raw {ingest_cpu / store_cpu:.0%}"
        )


if __name__ == "__main__":
    main()
