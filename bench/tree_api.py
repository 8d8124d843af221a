"""How fast the tree API answers for a 1,000-node tree with 1,000,000 spans stored.

Builds a synthetic cross-namespace tree through the store's own write path (the same
``save_run`` the linker uses), fills the spans table with a million rows, serves the API
with uvicorn and times ``GET /api/workflows/{ns}/{id}/tree`` over real HTTP.

    python bench/tree_api.py                       # SQLite in a temporary directory
    python bench/tree_api.py --postgres-url postgresql+psycopg://user@host/db
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import uvicorn
from sqlalchemy import insert

from tracer._process import freeze_startup_heap
from tracer.db import Span, create_db_engine, upgrade_database
from tracer.devserver import free_port
from tracer.store import CallFacts, LinkFacts, RunFacts, Store
from web import create_app

HANDLERS = 33
ACTIVITIES_PER_HANDLER = 28  # 1 + 33 calls + 33 handlers + 33 * 28 activities = 991 nodes


def build_tree_rows(store: Store) -> str:
    """Store one root with HANDLERS Nexus calls, each handled by a workflow with activities."""
    start = datetime(2026, 1, 1, tzinfo=UTC)
    root_id, root_run = "bench-order", "run-root"
    root = RunFacts("orders", root_id, root_run, "OrderWorkflow", "orders-tq", "completed",
                    start, start + timedelta(seconds=60), history_length=500)  # fmt: skip
    for index in range(HANDLERS):
        at = start + timedelta(seconds=index)
        event_id = 10 + index * 5
        root.calls.append(
            CallFacts(
                event_id,
                "nexus_operation",
                "payments-endpoint/Payments/op",
                at,
                "completed",
                at + timedelta(seconds=1),
                request_id=f"req-{index}",
                operation_token=f"token-{index}",
            )
        )
        root.links.append(
            LinkFacts(
                "nexus",
                "caller_history",
                "orders",
                root_id,
                root_run,
                "payments",
                f"payment-{index}",
                f"run-{index}",
                caller_event_id=event_id,
            )
        )
        handler = RunFacts("payments", f"payment-{index}", f"run-{index}", "PaymentWorkflow",
                           "payments-tq", "completed", at, at + timedelta(seconds=1),
                           history_length=200)  # fmt: skip
        handler.calls = [
            CallFacts(
                5 + 6 * step,
                "activity",
                f"step_{step}",
                at,
                "completed",
                at + timedelta(milliseconds=20),
                activity_id=str(step + 1),
            )
            for step in range(ACTIVITIES_PER_HANDLER)
        ]
        store.save_run(handler)
    store.save_run(root)
    return root_id


def fill_spans(store: Store, count: int) -> float:
    """Insert ``count`` spans in batches; returns the seconds it took."""
    began = time.perf_counter()
    attributes = json.dumps({"temporal.namespace": "orders"})
    now = datetime.now(UTC)
    batch = 20_000
    with store.engine.begin() as connection:
        for first in range(0, count, batch):
            rows = [
                {
                    "trace_id": f"{n:032x}",
                    "span_id": f"{n:016x}",
                    "parent_span_id": None,
                    "name": "RunActivity:step",
                    "kind": 1,
                    "service_name": "bench",
                    "start_time_unix_nano": 1_700_000_000_000_000_000 + n,
                    "end_time_unix_nano": 1_700_000_000_000_000_000 + n + 1000,
                    "status_code": 0,
                    "namespace": "orders",
                    "workflow_id": f"other-{n % 50_000}",
                    "run_id": f"other-run-{n % 50_000}",
                    "request_id": None,
                    "attributes": attributes,
                    "resource": "{}",
                    "events": "[]",
                    "links": "[]",
                    "received_at": now,
                }
                for n in range(first, min(first + batch, count))
            ]
            connection.execute(insert(Span), rows)
    return time.perf_counter() - began


async def time_requests(store: Store, workflow_id: str, requests: int) -> list[float]:
    """Serve the API on a free port and time ``requests`` tree requests, in seconds."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(store), host="127.0.0.1", port=port, log_level="warning")
    )
    freeze_startup_heap()  # as `temporal-tracer serve` does once it has started
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.05)
    timings: list[float] = []
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            url = f"/api/workflows/orders/{workflow_id}/tree"
            nodes = _count((await http.get(url)).json()["root"])  # warm-up
            print(f"tree nodes: {nodes}")
            for _ in range(requests):
                began = time.perf_counter()
                response = await http.get(url)
                timings.append(time.perf_counter() - began)
                response.raise_for_status()
    finally:
        server.should_exit = True
        await task
    return timings


def _count(node: dict[str, object]) -> int:
    children = node["children"]
    assert isinstance(children, list)
    return 1 + sum(_count(child) for child in children)


def run(url: str, spans: int, requests: int) -> None:
    engine = create_db_engine(url)
    upgrade_database(engine)
    store = Store(engine)
    began = time.perf_counter()
    workflow_id = build_tree_rows(store)
    print(f"[{engine.dialect.name}] tree stored in {time.perf_counter() - began:.2f}s")
    seconds = fill_spans(store, spans)
    print(f"[{engine.dialect.name}] {spans:,} spans stored in {seconds:.1f}s")
    timings = sorted(asyncio.run(time_requests(store, workflow_id, requests)))
    p50 = statistics.median(timings) * 1000
    p95 = timings[int(len(timings) * 0.95) - 1] * 1000
    print(
        f"[{engine.dialect.name}] GET tree over HTTP, {requests} requests: "
        f"p50 {p50:.1f} ms, p95 {p95:.1f} ms, max {timings[-1] * 1000:.1f} ms (target <= 100 ms)"
    )
    engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--spans", type=int, default=1_000_000)
    parser.add_argument("--requests", type=int, default=50)
    parser.add_argument("--postgres-url", help="also run against this (empty) PostgreSQL db")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        run(f"sqlite:///{Path(tmp) / 'bench.db'}", args.spans, args.requests)
    if args.postgres_url:
        run(args.postgres_url, args.spans, args.requests)


if __name__ == "__main__":
    main()
