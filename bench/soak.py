"""Soak: many cross-namespace orders, the collector on PostgreSQL killed and restarted mid-run.

Runs the sample's orders (async and sync Nexus, fire-and-forget, activity wrappers, declined
and timed-out payments) against a fresh embedded Temporal dev server, with the workers
exporting spans to a ``temporal-tracer serve`` process on a throwaway PostgreSQL cluster.
Half-way through, the collector is killed with SIGKILL and started again. Then it prints
workflows run, edges expected and found, spans sent, stored and dropped, and the link
latency (handler workflow start to edge stored, i.e. visible in the API).

    python bench/soak.py                  # 1,000 orders
    python bench/soak.py --orders 200     # a quicker look
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from sqlalchemy import create_engine, func, select, text
from temporalio.service import RPCError, RPCStatusCode

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from interceptors import TracingInterceptor
from tests._postgres import postgres_bindir, temporary_postgres
from tracer.db import Link, Span, WorkflowRun, create_db_engine
from tracer.demo.fleet import OrderOutcome, run_orders, run_sample_fleet, sample_orders
from tracer.demo.model import ENDPOINTS, NAMESPACES, ORDERS_NAMESPACE, Order
from tracer.devserver import DevServer, free_port
from tracer.store import Store


class CountingProcessor(SpanProcessor):
    """Counts the spans the workers finished (and so handed to the exporter)."""

    def __init__(self) -> None:
        self.ended = 0

    def on_end(self, span: ReadableSpan) -> None:
        self.ended += 1


class CollectorProcess:
    """``temporal-tracer serve`` as a child process that can be killed and started again."""

    def __init__(self, db_url: str, address: str, log: Path) -> None:
        self.port, self.otlp_port = free_port(), free_port()
        self.args = [
            sys.executable, "-m", "tracer", "serve", "--db", db_url,
            "--temporal-address", address, "--port", str(self.port),
            "--otlp-port", str(self.otlp_port), "--poll-interval", "0.5",
            "--log-level", os.environ.get("SOAK_LOG_LEVEL", "INFO"),
            *(arg for ns in NAMESPACES for arg in ("--namespace", ns)),
        ]  # fmt: skip
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with open(self.log, "ab") as out:
            self.process = subprocess.Popen(self.args, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{self.port}/healthz", timeout=1).is_success:
                    return
            except httpx.HTTPError:
                time.sleep(0.1)
        raise RuntimeError(f"collector did not start; see {self.log}")

    def kill(self) -> None:
        if self.process is not None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(timeout=30)


def expected_edges(order: Order) -> int:
    """Cross-namespace workflow edges of one order: payment, then confirmation and stock."""
    return 1 if order.id.endswith(("-declined", "-slow")) else 3


async def started_handlers(clients: dict[str, Any], orders: list[Order]) -> int:
    """How many of the orders' handler workflows exist, by asking Temporal."""
    count = 0
    for order in orders:
        for namespace, prefix in (("payments", "payment"), ("notifications", "confirm"),
                                  ("inventory", "stock")):  # fmt: skip
            try:
                await clients[namespace].get_workflow_handle(f"{prefix}-{order.id}").describe()
            except RPCError as err:
                if err.status != RPCStatusCode.NOT_FOUND:
                    raise
            else:
                count += 1
    return count


def edges_found(store: Store, order: Order) -> int:
    root = store.tree(ORDERS_NAMESPACE, order.id, scope=None)
    if root is None:
        return 0
    return sum(1 for node in root.walk() if node.kind == "workflow" and node.link != "root")


@contextmanager
def database(url: str | None) -> Iterator[str]:
    """The given PostgreSQL URL, or a throwaway cluster's new database."""
    if url:
        yield url
        return
    bindir = postgres_bindir()
    if bindir is None:
        raise SystemExit("PostgreSQL is not installed: pass --postgres-url")
    with temporary_postgres(bindir) as admin_url:
        admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as connection:
            connection.execute(text("CREATE DATABASE soak"))
        admin.dispose()
        yield admin_url.rsplit("/", 1)[0] + "/soak"


async def place(
    orders: list[Order], client: Any, concurrency: int, on_half: Any
) -> list[OrderOutcome]:
    """Place orders ``concurrency`` at a time; call ``on_half`` once half are placed."""
    slots = asyncio.Semaphore(concurrency)
    placed = 0
    outcomes: list[OrderOutcome] = []

    async def one(order: Order) -> None:
        nonlocal placed
        async with slots:
            placed += 1
            if placed == len(orders) // 2:
                await on_half()
            outcomes.extend(await run_orders(client, [order]))

    await asyncio.gather(*(one(order) for order in orders))
    return outcomes


async def soak(args: argparse.Namespace, db_url: str, workdir: Path) -> None:
    server = DevServer(namespaces=NAMESPACES, endpoints=ENDPOINTS, log_file=workdir / "t.log")
    server.start()
    collector = CollectorProcess(db_url, f"127.0.0.1:{server.port}", workdir / "collector.log")
    try:
        await server.wait_ready()
        collector.start()
        counter = CountingProcessor()
        provider = TracerProvider(resource=Resource.create({"service.name": "soak-fleet"}))
        provider.add_span_processor(counter)
        exporter = OTLPSpanExporter(endpoint=f"http://127.0.0.1:{collector.otlp_port}/v1/traces")
        provider.add_span_processor(BatchSpanProcessor(exporter, max_queue_size=100_000))
        orders: list[Order] = []
        while len(orders) < args.orders:
            orders.extend(sample_orders(uuid.uuid4().hex[:8]))
        orders = orders[: args.orders]
        restarted: dict[str, float] = {}

        async def kill_and_restart() -> None:
            began = time.monotonic()
            collector.kill()
            print(f"collector killed after {len(orders) // 2} orders placed", flush=True)
            await asyncio.to_thread(collector.start)
            restarted["seconds"] = time.monotonic() - began

        began = time.monotonic()
        async with run_sample_fleet(
            server.address,
            inventory_port=free_port(),
            interceptors=[TracingInterceptor(tracer_provider=provider)],
        ) as fleet:
            outcomes = await place(
                orders, fleet.clients[ORDERS_NAMESPACE], args.concurrency, kill_and_restart
            )
            ran = time.monotonic() - began
            provider.force_flush()
            fleet_clients = fleet.clients
        print(f"{len(outcomes)} orders closed in {ran:.1f}s; collector down "
              f"{restarted.get('seconds', 0):.1f}s", flush=True)  # fmt: skip

        store = Store(create_db_engine(db_url))
        scenario = sum(expected_edges(order) for order in orders)
        expected = await started_handlers(fleet_clients, orders)
        deadline = time.monotonic() + args.settle
        found = 0
        while time.monotonic() < deadline:
            found = await asyncio.to_thread(
                lambda: sum(edges_found(store, order) for order in orders)
            )
            if found >= expected:
                break
            await asyncio.sleep(1)
        latencies = link_latencies(store)
        with store.session() as session:
            stored = int(session.scalar(select(func.count()).select_from(Span)) or 0)
        provider.shutdown()
        print()
        print(f"workflows run:   {len(orders)} orders, {count_runs(store)} workflow runs")
        print(f"edges expected:  {scenario} by the scenario; {expected} handler workflows "
              "Temporal started (a payment can time out before its handler starts)")  # fmt: skip
        print(f"edges found:     {found} ({100 * found / max(expected, 1):.1f} %)")
        print(f"spans sent:      {counter.ended}")
        print(f"spans stored:    {stored}")
        print(
            f"spans dropped:   {max(counter.ended - stored, 0)} (sent while the collector was down)"
        )
        if latencies:
            p50 = statistics.median(latencies)
            p95 = latencies[int(len(latencies) * 0.95) - 1]
            print(f"link latency:    p50 {p50:.2f}s, p95 {p95:.2f}s over {len(latencies)} edges "
                  f"(handler start to edge stored; target p95 <= 2 s)")  # fmt: skip
    finally:
        collector.stop()
        server.stop()


def count_runs(store: Store) -> int:
    with store.session() as session:
        return int(session.scalar(select(func.count()).select_from(WorkflowRun)) or 0)


def link_latencies(store: Store) -> list[float]:
    """Seconds from each handler run's start to the first time an edge to it was stored."""
    with store.session() as session:
        rows = session.execute(
            select(WorkflowRun.start_time, func.min(Link.created_at))
            .join(
                Link,
                (Link.handler_namespace == WorkflowRun.namespace)
                & (Link.handler_run_id == WorkflowRun.run_id),
            )
            .group_by(WorkflowRun.id, WorkflowRun.start_time)
        ).all()
    return sorted(
        max((stored.replace(tzinfo=started.tzinfo) - started).total_seconds(), 0.0)
        for started, stored in rows
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--orders", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=40)
    parser.add_argument("--settle", type=float, default=120, help="seconds to wait for edges")
    parser.add_argument("--postgres-url", help="an empty PostgreSQL database to use")
    args = parser.parse_args()
    # Declined cards and a collector that is down on purpose: expected, not worth a traceback.
    logging.basicConfig(level=logging.WARNING)
    for noisy in ("temporalio", "opentelemetry", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.CRITICAL)
    os.environ.setdefault("TEMPORAL_TRACER_LINK_KEY", uuid.uuid4().hex)
    with tempfile.TemporaryDirectory() as tmp, database(args.postgres_url) as db_url:
        workdir = Path(os.environ.get("SOAK_WORKDIR", tmp))
        asyncio.run(soak(args, db_url, workdir))


if __name__ == "__main__":
    main()
