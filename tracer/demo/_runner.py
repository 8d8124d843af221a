"""``temporal-tracer demo``: the whole sample on one machine, with nothing to set up."""

from __future__ import annotations

import argparse
import asyncio
import functools
import logging
import os
import secrets
import shutil
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from interceptors import LINK_KEY_ENV, TracingInterceptor

from .._ports import ensure_port_free
from .._process import run_until_signalled
from ..devserver import DevServer, wait_for_server
from .model import ENDPOINTS, NAMESPACES, ORDERS_NAMESPACE

if TYPE_CHECKING:  # the collector extra's modules load with the demo, not with the CLI
    from .._service import Collector
    from .fleet import OrderOutcome

__all__ = ["add_demo_arguments", "run_demo"]

logger = logging.getLogger(__name__)

LINK_WAIT_SECONDS = 60.0


def add_demo_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``temporal-tracer demo``."""
    parser.add_argument(
        "--workdir",
        type=Path,
        default=Path(".demo"),
        help="where the demo keeps its database and logs (default %(default)s)",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default %(default)s)")
    parser.add_argument(
        "--port", type=int, default=8700, help="tracer UI and API port (default %(default)s)"
    )
    parser.add_argument(
        "--otlp-port", type=int, default=4318, help="OTLP/HTTP receiver port (default %(default)s)"
    )
    parser.add_argument(
        "--temporal-port",
        type=int,
        default=7233,
        help="embedded Temporal gRPC port (default %(default)s)",
    )
    parser.add_argument(
        "--temporal-ui-port",
        type=int,
        default=8233,
        help="embedded Temporal Web UI port (default %(default)s)",
    )
    parser.add_argument(
        "--inventory-port",
        type=int,
        default=8702,
        help="the sample inventory HTTP API's port (default %(default)s)",
    )
    external = parser.add_argument_group(
        "against your own Temporal and collector (docker compose, a staging cluster)"
    )
    external.add_argument(
        "--temporal-address",
        metavar="HOST:PORT",
        help="use this Temporal server (its namespaces must exist; the sample's Nexus "
        "endpoints are created if missing) instead of an embedded one; no collector is "
        "started: spans go to --otlp-endpoint",
    )
    external.add_argument(
        "--otlp-endpoint",
        metavar="URL",
        help="where the workers send spans, e.g. http://collector:4318/v1/traces "
        "(default: OTEL_EXPORTER_OTLP_ENDPOINT, as any OpenTelemetry SDK)",
    )
    external.add_argument(
        "--tracer-url", metavar="URL", help="the collector's UI, to print links to the trees"
    )
    external.add_argument(
        "--every",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="place the sample orders again every SECONDS (default: once)",
    )
    parser.add_argument(
        "--exit-when-ready",
        action="store_true",
        help="stop everything once the trees are linked, instead of serving until Ctrl-C",
    )


def run_demo(args: argparse.Namespace) -> int:
    """Run the demo until Ctrl-C (or until ready, with ``--exit-when-ready``)."""
    if args.temporal_address:
        ensure_port_free(args.inventory_port, "inventory API", args.host, "--inventory-port")
        run_until_signalled(_sample_fleet_only(args))
        return 0
    for port, what, flag in (
        (args.port, "tracer UI", "--port"),
        (args.otlp_port, "OTLP receiver", "--otlp-port"),
        (args.temporal_port, "Temporal gRPC", "--temporal-port"),
        (args.temporal_ui_port, "Temporal UI", "--temporal-ui-port"),
        (args.inventory_port, "inventory API", "--inventory-port"),
    ):
        ensure_port_free(port, what, args.host, flag)
    run_until_signalled(_demo(args))
    print("temporal-tracer demo stopped; nothing left running.", flush=True)
    return 0


async def _demo(args: argparse.Namespace) -> None:
    from .._service import ServeSettings, run_collector
    from .fleet import run_orders, run_sample_fleet, sample_orders

    # The sample fails some calls on purpose; the SDK would log each with a traceback.
    logging.getLogger("temporalio").setLevel(logging.ERROR)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    # The demo's activities and its inventory API share a signing key, so the activity
    # wrapper links show as verified. In production both sides get it from the deployment.
    os.environ.setdefault(LINK_KEY_ENV, secrets.token_hex(32))
    workdir: Path = args.workdir
    # A fresh Temporal server each run, so a fresh store too: the demo shows this run.
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    started = time.monotonic()
    server = DevServer(
        namespaces=NAMESPACES,
        endpoints=ENDPOINTS,
        host=args.host,
        port=args.temporal_port,
        ui_port=args.temporal_ui_port,
        log_file=workdir / "temporal.log",
    )
    print(f"Starting Temporal dev server on {server.address} ...", flush=True)
    server.start()
    try:
        await server.wait_ready()
        settings = ServeSettings(
            db_url=f"sqlite:///{workdir / 'tracer.db'}",
            namespaces=list(NAMESPACES),
            temporal_address=server.address,
            host=args.host,
            port=args.port,
            otlp_port=args.otlp_port,
            otlp_grpc_port=0,
            poll_interval=0.5,
            temporal_ui_url=server.ui_address,
        )
        async with run_collector(settings) as collector:
            print(f"Collector linking {', '.join(NAMESPACES)} into {settings.db_url}", flush=True)
            # The sample's workers export their spans to the collector, as users' workers do.
            provider = _tracer_provider(f"{collector.otlp_url}/v1/traces")
            try:
                async with run_sample_fleet(
                    server.address,
                    inventory_port=args.inventory_port,
                    host=args.host,
                    interceptors=[TracingInterceptor(tracer_provider=provider)],
                ) as fleet:
                    tag = datetime.now(UTC).strftime("%H%M%S")
                    orders = sample_orders(tag)
                    print(f"Placing {len(orders)} sample orders ...", flush=True)
                    outcomes = await run_orders(fleet.clients[ORDERS_NAMESPACE], orders)
                    await _wait_linked(collector, outcomes)
                    _print_ready(collector, server, outcomes, time.monotonic() - started)
                    if not args.exit_when_ready:
                        await asyncio.Event().wait()
            finally:
                provider.shutdown()
    finally:
        server.stop()


def _tracer_provider(otlp_endpoint: str | None) -> TracerProvider:
    """Spans of the sample's workers, batched to an OTLP/HTTP endpoint (the collector)."""
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    provider = TracerProvider(resource=Resource.create({"service.name": "demo-fleet"}))
    exporter = OTLPSpanExporter(endpoint=otlp_endpoint)  # None: OTEL_* variables decide
    provider.add_span_processor(BatchSpanProcessor(exporter, schedule_delay_millis=500))
    return provider


async def _sample_fleet_only(args: argparse.Namespace) -> None:
    """The sample's workers and orders against an existing Temporal server and collector."""
    from .fleet import run_orders, run_sample_fleet, sample_orders

    logging.getLogger("temporalio").setLevel(logging.ERROR)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    print(f"Waiting for Temporal at {args.temporal_address} ...", flush=True)
    await wait_for_server(args.temporal_address, NAMESPACES, ENDPOINTS, timeout=300)
    provider = _tracer_provider(args.otlp_endpoint)
    try:
        async with run_sample_fleet(
            args.temporal_address,
            inventory_port=args.inventory_port,
            host=args.host,
            interceptors=[TracingInterceptor(tracer_provider=provider)],
        ) as fleet:
            while True:
                orders = sample_orders(datetime.now(UTC).strftime("%H%M%S"))
                outcomes = await run_orders(fleet.clients[ORDERS_NAMESPACE], orders)
                for outcome in outcomes:
                    where = (
                        f"{args.tracer_url.rstrip('/')}/workflows/{ORDERS_NAMESPACE}/"
                        if args.tracer_url
                        else ""
                    )
                    print(f"  {outcome.status:<9} {where}{outcome.order_id}", flush=True)
                if args.every <= 0:
                    print("Sample orders placed; workers keep running. Ctrl-C stops them.")
                    await asyncio.Event().wait()
                await asyncio.sleep(args.every)
    finally:
        provider.shutdown()


async def _wait_linked(collector: Collector, outcomes: list[OrderOutcome]) -> None:
    """Wait until each order is closed and its tree reaches into another namespace."""
    deadline = time.monotonic() + LINK_WAIT_SECONDS
    waiting = {outcome.order_id for outcome in outcomes}
    while waiting and time.monotonic() < deadline:
        for order_id in list(waiting):
            # The demo's own read: it sees every namespace it started.
            root = await asyncio.to_thread(
                functools.partial(collector.store.tree, ORDERS_NAMESPACE, order_id, scope=None)
            )
            if (
                root is not None
                and root.status != "running"
                and any(
                    node.kind == "workflow" and node.namespace != ORDERS_NAMESPACE
                    for node in root.walk()
                )
            ):
                waiting.discard(order_id)
        await asyncio.sleep(0.25)
    if waiting:
        logger.warning("not linked yet after %.0fs: %s", LINK_WAIT_SECONDS, sorted(waiting))


def _print_ready(
    collector: Collector, server: DevServer, outcomes: list[OrderOutcome], elapsed: float
) -> None:
    lines = [
        "",
        f"temporal-tracer demo is ready ({elapsed:.1f}s).",
        f"  Tracer UI:      {collector.ui_url}/",
    ]
    for outcome in outcomes:
        url = f"{collector.ui_url}/workflows/{ORDERS_NAMESPACE}/{outcome.order_id}"
        detail = f" ({outcome.detail})" if outcome.detail else ""
        lines.append(f"  {outcome.status:<9} {url}{detail}")
    # The UI's front page is the empty `default` namespace: link each sample namespace.
    for index, namespace in enumerate(NAMESPACES):
        label = "Temporal UI:" if index == 0 else ""
        lines.append(
            f"  {label:<15} {server.ui_address}/namespaces/{quote(namespace, safe='')}/workflows"
        )
    lines += [
        f"  OTLP receiver:  {collector.otlp_url}/v1/traces",
        "Press Ctrl-C to stop.",
    ]
    print("\n".join(lines), flush=True)
