"""``temporal-tracer serve``: the composition root that wires the linker, the UI/API, the
OTLP receiver and the background jobs into one process."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import uvicorn
from starlette.types import ASGIApp

from web import LOCAL_HOSTS, WebSettings, create_app

from ._ports import ensure_port_free
from ._process import freeze_startup_heap
from .db import DEFAULT_DB_URL, create_db_engine, upgrade_database
from .export import ExportDestination, Exporter, export_lease
from .ingest import DEFAULT_OTLP_GRPC_PORT, GrpcReceiver, SpanLimits, create_receiver_app
from .jobs import RETENTION_LEASE, LeaseKeeper, run_retention, run_summaries
from .link import DEFAULT_CALLS_PER_SECOND, Connections, HistoryLinker, load_connect_configs
from .store import Store

__all__ = [
    "Collector",
    "ServeSettings",
    "default_allowed_hosts",
    "run_collector",
    "serve_forever",
]

logger = logging.getLogger(__name__)


@dataclass
class ServeSettings:
    """Everything ``serve`` is configured with (flags and environment variables)."""

    db_url: str = DEFAULT_DB_URL
    namespaces: list[str] = field(default_factory=list)
    temporal_address: str | None = None
    profile_file: Path | None = None
    host: str = "127.0.0.1"
    port: int = 8700
    otlp_port: int = 4318
    # OTLP/gRPC receiver; 0 turns it off.
    otlp_grpc_port: int = DEFAULT_OTLP_GRPC_PORT
    poll_interval: float = 1.0
    # The linker's budget of Temporal calls a second per namespace, shared by collectors.
    temporal_calls_per_second: float = DEFAULT_CALLS_PER_SECOND
    temporal_ui_url: str | None = None
    tokens_file: Path | None = None
    # Upstream OTLP backends (Jaeger, Tempo...) the stored spans are forwarded to.
    export_endpoints: list[ExportDestination] = field(default_factory=list)
    # Trees (and spans) that ended longer ago than this are deleted; None keeps everything.
    retention: timedelta | None = None
    # The bearer token OTLP exports must carry; None lets whoever reaches the port send.
    otlp_token: str | None = None
    # What the receiver keeps of each span (OpenTelemetry's OTEL_*_LIMIT variables).
    span_limits: SpanLimits = field(default_factory=SpanLimits.from_env)
    # Host names the UI answers to; None: the names of the bound address.
    allowed_hosts: list[str] | None = None
    # Proxies whose X-Forwarded-For/-Proto uvicorn trusts; None: uvicorn's default
    # (FORWARDED_ALLOW_IPS, else 127.0.0.1).
    forwarded_allow_ips: str | None = None


def default_allowed_hosts(host: str) -> list[str]:
    """The host names a UI bound to ``host`` is reached by: the loopback names, the bound
    address itself and, bound to every interface, this machine's own names."""
    names = [*LOCAL_HOSTS]
    if host in ("", "0.0.0.0", "::"):
        names += [socket.gethostname(), socket.getfqdn()]
    else:
        names.append(host)
    return list(dict.fromkeys(name.lower() for name in names if name))


@dataclass
class Collector:
    """A running collector: its store, its linker and the addresses it serves."""

    store: Store
    linker: HistoryLinker
    ui_url: str
    otlp_url: str
    otlp_grpc_url: str | None = None


def _http_server(
    app: ASGIApp, host: str, port: int, forwarded_allow_ips: str | None = None
) -> uvicorn.Server:
    return uvicorn.Server(
        uvicorn.Config(
            app,
            host=host,
            port=port,
            log_level="warning",
            lifespan="off",
            proxy_headers=True,
            forwarded_allow_ips=forwarded_allow_ips,
        )
    )


@contextlib.asynccontextmanager
async def run_collector(settings: ServeSettings) -> AsyncIterator[Collector]:
    """Start the collector in the running event loop; stop it when the context exits."""
    if not settings.namespaces:
        raise ValueError("no namespace to link: give --namespace at least once")
    ensure_port_free(settings.port, "tracer UI", settings.host, "--port")
    ensure_port_free(settings.otlp_port, "OTLP receiver", settings.host, "--otlp-port")
    if settings.otlp_grpc_port:
        ensure_port_free(
            settings.otlp_grpc_port, "OTLP/gRPC receiver", settings.host, "--otlp-grpc-port"
        )
    engine = create_db_engine(settings.db_url)
    await asyncio.to_thread(upgrade_database, engine)
    store = Store(engine)
    connections = Connections(
        load_connect_configs(
            settings.namespaces,
            address=settings.temporal_address,
            profile_file=settings.profile_file,
        )
    )
    # One set of leases shares every piece of work between collectors on one database:
    # each namespace to link, each destination to export to, and the retention sweep.
    leases = LeaseKeeper(store)
    lease_names = [
        *settings.namespaces,
        *(export_lease(destination) for destination in settings.export_endpoints),
        *([RETENTION_LEASE] if settings.retention is not None else []),
    ]
    leases.held = await asyncio.to_thread(leases.balance, lease_names)
    linker = HistoryLinker(
        store,
        connections,
        poll_interval=settings.poll_interval,
        leases=leases,
        calls_per_second=settings.temporal_calls_per_second,
    )
    web_settings = WebSettings(
        temporal_ui_urls={"*": settings.temporal_ui_url} if settings.temporal_ui_url else {},
        tokens_file=settings.tokens_file,
        connections=connections,
        allowed_hosts=settings.allowed_hosts or default_allowed_hosts(settings.host),
    )
    servers = [
        _http_server(
            create_app(store, web_settings),
            settings.host,
            settings.port,
            settings.forwarded_allow_ips,
        ),
        _http_server(
            create_receiver_app(store, token=settings.otlp_token, limits=settings.span_limits),
            settings.host,
            settings.otlp_port,
        ),
    ]
    grpc_receiver = (
        GrpcReceiver(
            store,
            settings.host,
            settings.otlp_grpc_port,
            token=settings.otlp_token,
            limits=settings.span_limits,
        )
        if settings.otlp_grpc_port
        else None
    )
    freeze_startup_heap()
    stop = asyncio.Event()
    tasks = [asyncio.create_task(server.serve()) for server in servers]
    tasks.append(asyncio.create_task(leases.run(lease_names, stop)))
    tasks.append(asyncio.create_task(linker.run(stop)))
    tasks.append(asyncio.create_task(run_summaries(store, stop)))
    if settings.export_endpoints:
        exporter = Exporter(store, settings.export_endpoints, leases=leases)
        tasks.append(asyncio.create_task(exporter.run(stop)))
    if settings.retention is not None:
        tasks.append(
            asyncio.create_task(run_retention(store, settings.retention, stop, leases=leases))
        )
    try:
        if grpc_receiver is not None:
            await grpc_receiver.start()
        while not all(server.started for server in servers):
            for task in tasks:
                if task.done():
                    task.result()
                    raise RuntimeError("the collector stopped while starting")
            await asyncio.sleep(0.05)
        collector = Collector(
            store=store,
            linker=linker,
            ui_url=f"http://{settings.host}:{settings.port}",
            otlp_url=f"http://{settings.host}:{settings.otlp_port}",
            otlp_grpc_url=(
                f"http://{settings.host}:{grpc_receiver.port}" if grpc_receiver else None
            ),
        )
        logger.info("tracer UI and API on %s", collector.ui_url)
        logger.info("OTLP/HTTP receiver on %s/v1/traces", collector.otlp_url)
        if collector.otlp_grpc_url:
            logger.info("OTLP/gRPC receiver on %s", collector.otlp_grpc_url)
        for destination in settings.export_endpoints:
            logger.info("forwarding spans to %s (%s)", destination.endpoint, destination.protocol)
        yield collector
    finally:
        stop.set()
        for server in servers:
            server.should_exit = True
        if grpc_receiver is not None:
            await grpc_receiver.stop()
        await asyncio.gather(*tasks, return_exceptions=True)
        engine.dispose()


async def serve_forever(settings: ServeSettings) -> None:
    """Run the collector until the process is interrupted."""
    async with run_collector(settings):
        await asyncio.Event().wait()
