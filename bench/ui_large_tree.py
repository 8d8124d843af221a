"""How long a 1,000-node call-tree page takes to load and render in a real browser.

Builds a synthetic tree in a fresh SQLite store (a root workflow in ``orders`` making
``--calls`` Nexus calls, each handled by a workflow in another namespace that runs
``--activities`` activities; a few of them fail), serves it with the real web app and opens
it in Debian's Chromium through Playwright. For each of ``--rounds`` page loads it records
the server's response time and the time from navigation start until the first frame after
the page's load event (``performance.now()`` in a double ``requestAnimationFrame``), then
the time to open a node's detail and to collapse everything. Prints medians; the target is
a page loaded and rendered in under 2 s.

It also weighs the page: ``--spans`` spans of ``--span-mib`` MiB each (decoded by the
receiver's own code, within its span limits) are stored on the tree's workflows first, and
the page's HTML must stay under 300 KiB before compression (node details load on demand,
so the page does not depend on spans; a browser that does not ask for gzip gets it all).
It prints both the raw size and what gzip transfers. Not a test.

    .venv/bin/python bench/ui_large_tree.py [--calls 40] [--activities 23] [--rounds 5]
        [--spans 11] [--span-mib 7]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import uvicorn
from playwright.async_api import async_playwright

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

from tracer.db import create_db_engine, upgrade_database
from tracer.devserver import free_port
from tracer.ingest import decode_export_request
from tracer.store import CallFacts, LinkFacts, RunFacts, Store
from web import WebSettings, create_app

__all__ = ["add_big_spans", "build_store", "main"]

PAGE_BUDGET = 300 * 1024

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
HANDLER_NAMESPACES = ["payments", "inventory", "notifications"]


def build_store(path: Path, calls: int, activities: int) -> tuple[Store, int]:
    """A store holding one tree of ``1 + calls * (2 + activities)`` nodes."""
    engine = create_db_engine(f"sqlite:///{path}")
    upgrade_database(engine)
    store = Store(engine)
    t0 = datetime.now(UTC) - timedelta(minutes=5)
    root_calls: list[CallFacts] = []
    links: list[LinkFacts] = []
    for index in range(calls):
        start = t0 + timedelta(milliseconds=50 + index * 100)
        failed = index % 13 == 7
        namespace = HANDLER_NAMESPACES[index % len(HANDLER_NAMESPACES)]
        handler_run = f"run-h{index}"
        root_calls.append(
            CallFacts(
                event_id=10 + index * 6,
                kind="nexus_operation",
                name=f"{namespace}-endpoint/Service{index % 5}/operation_{index}",
                start_time=start,
                end_time=start + timedelta(milliseconds=900),
                status="failed" if failed else "completed",
                error_type="HandlerFailed" if failed else None,
                error_message=f"step {index} failed" if failed else None,
                endpoint=f"{namespace}-endpoint",
                service=f"Service{index % 5}",
                operation=f"operation_{index}",
                request_id=f"req-{index}",
                operation_token=f"token-{index}",
            )
        )
        links.append(
            LinkFacts(
                kind="nexus",
                source="caller_history",
                caller_namespace="orders",
                caller_workflow_id="big-order",
                caller_run_id="run-root",
                handler_namespace=namespace,
                handler_workflow_id=f"handler-{index}",
                handler_run_id=handler_run,
                caller_event_id=10 + index * 6,
            )
        )
        handler_start = start + timedelta(milliseconds=20)
        store.save_run(
            RunFacts(
                namespace=namespace,
                workflow_id=f"handler-{index}",
                run_id=handler_run,
                workflow_type=f"Handler{index % 5}Workflow",
                task_queue=f"{namespace}-tq",
                status="failed" if failed else "completed",
                start_time=handler_start,
                close_time=handler_start + timedelta(milliseconds=860),
                error_type="HandlerFailed" if failed else None,
                error_message=f"step {index} failed" if failed else None,
                history_length=3 * activities + 8,
                calls=[
                    CallFacts(
                        event_id=5 + step * 6,
                        kind="activity",
                        name=f"step_{step}",
                        start_time=handler_start + timedelta(milliseconds=10 + step * 36),
                        end_time=handler_start + timedelta(milliseconds=40 + step * 36),
                        status="failed" if failed and step == activities - 1 else "completed",
                        error_type="HandlerFailed" if failed and step == activities - 1 else None,
                        error_message=f"step {index} failed"
                        if failed and step == activities - 1
                        else None,
                        activity_id=str(step + 1),
                    )
                    for step in range(activities)
                ],
            )
        )
    store.save_run(
        RunFacts(
            namespace="orders",
            workflow_id="big-order",
            run_id="run-root",
            workflow_type="BigOrderWorkflow",
            task_queue="orders-tq",
            status="failed",
            start_time=t0,
            close_time=t0 + timedelta(milliseconds=calls * 100 + 1000),
            error_type="HandlerFailed",
            error_message="step 7 failed",
            history_length=calls * 6 + 10,
            calls=root_calls,
            links=links,
        )
    )
    return store, 1 + calls * (2 + activities)


def add_big_spans(store: Store, spans: int, mib: float) -> None:
    """Store ``spans`` spans of ``mib`` MiB each on the tree's workflows, through the
    receiver's decoding (and so its span limits)."""
    targets = [("orders", "big-order", "run-root")] + [
        (HANDLER_NAMESPACES[i % 3], f"handler-{i}", f"run-h{i}") for i in range(spans)
    ]
    for index in range(spans):
        namespace, workflow_id, run_id = targets[index % len(targets)]
        request = ExportTraceServiceRequest()
        span = request.resource_spans.add().scope_spans.add().spans.add()
        span.trace_id = (index + 1).to_bytes(16, "big")
        span.span_id = (index + 1).to_bytes(8, "big")
        span.name = "RunWorkflow:Big"
        span.start_time_unix_nano = 1_700_000_000_000_000_000
        span.end_time_unix_nano = 1_700_000_000_100_000_000
        for key, value in (
            ("temporal.namespace", namespace),
            ("temporal.workflow_id", workflow_id),
            ("temporal.run_id", run_id),
            ("payload", "p" * int(mib * 1024 * 1024)),
        ):
            span.attributes.add(key=key, value=AnyValue(string_value=value))
        decoded = decode_export_request(
            request.SerializeToString(), "protobuf", datetime.now(UTC), max_bytes=2**31
        )
        store.save_spans(decoded.rows)


async def main(argv: list[str] | None = None) -> None:
    """Run the benchmark and print its medians."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=40)
    parser.add_argument("--activities", type=int, default=23)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--spans", type=int, default=11)
    parser.add_argument("--span-mib", type=float, default=7.0)
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as folder:
        store, nodes = build_store(Path(folder) / "tracer.db", args.calls, args.activities)
        add_big_spans(store, args.spans, args.span_mib)
        port = free_port()
        app = create_app(store, WebSettings(temporal_ui_urls={"*": "http://temporal-ui:8233"}))
        server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
        )
        task = asyncio.create_task(server.serve())
        while not server.started:
            await asyncio.sleep(0.02)
        url = f"http://127.0.0.1:{port}/workflows/orders/big-order"
        server_ms: list[float] = []
        render_ms: list[float] = []
        detail_ms: list[float] = []
        collapse_ms: list[float] = []
        html_bytes = wire_bytes = detail_bytes = 0
        try:
            async with httpx.AsyncClient() as client:
                for _ in range(args.rounds):
                    began = time.perf_counter()
                    response = await client.get(url)
                    server_ms.append((time.perf_counter() - began) * 1000)
                    wire_bytes = response.num_bytes_downloaded
                raw = await client.get(url, headers={"Accept-Encoding": "identity"})
                html_bytes = raw.num_bytes_downloaded
                detail = await client.get(
                    f"http://127.0.0.1:{port}/api/workflows/orders/big-order/nodes/0",
                    headers={"Accept-Encoding": "identity"},
                )
                detail_bytes = len(detail.content)
            async with async_playwright() as playwright:
                browser = await playwright.chromium.launch(
                    executable_path=args.chromium, args=CHROMIUM_ARGS
                )
                page = await browser.new_page(viewport={"width": 1440, "height": 900})
                for _ in range(args.rounds):
                    await page.goto(url, wait_until="load")
                    rendered = await page.evaluate(
                        "() => new Promise(r => requestAnimationFrame("
                        "() => requestAnimationFrame(() => r(performance.now()))))"
                    )
                    render_ms.append(float(rendered))
                    rows = await page.locator(".waterfall .row").count()
                    assert rows == nodes, f"{rows} rows rendered, {nodes} expected"
                    began = time.perf_counter()
                    await page.locator(".node.error-origin > .row").first.click()
                    await page.locator("#detail .detail-error").wait_for()
                    detail_ms.append((time.perf_counter() - began) * 1000)
                    began = time.perf_counter()
                    await page.get_by_role("button", name="Collapse all").click()
                    await page.evaluate("() => new Promise(r => requestAnimationFrame(() => r(0)))")
                    collapse_ms.append((time.perf_counter() - began) * 1000)
                await browser.close()
        finally:
            server.should_exit = True
            await task
            store.engine.dispose()
    median = statistics.median
    print(f"tree of {nodes} nodes, {args.rounds} rounds, {args.spans} spans of {args.span_mib} MiB")
    print(
        f"  page: {html_bytes / 1024:.0f} KiB of HTML, {wire_bytes / 1024:.0f} KiB transferred "
        f"with gzip; the root's detail: {detail_bytes / 1024:.0f} KiB"
    )
    fits = "OK" if html_bytes < PAGE_BUDGET else "over"
    print(f"  target < {PAGE_BUDGET // 1024} KiB of HTML whatever the spans hold: {fits}")
    print(f"  server response (build tree + render HTML): {median(server_ms):7.0f} ms")
    print(f"  browser load and first render:              {median(render_ms):7.0f} ms")
    print(f"  click a node -> detail panel:               {median(detail_ms):7.0f} ms")
    print(f"  collapse all:                               {median(collapse_ms):7.0f} ms")
    verdict = "OK" if median(render_ms) < 2000 else "over the 2 s target"
    print(f"  target < 2000 ms to load and render: {verdict}")


if __name__ == "__main__":
    asyncio.run(main())
