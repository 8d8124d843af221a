"""Shared fixtures: a real Temporal dev server, databases, the sample fleet, a browser.

Under ``TRACER_REQUIRE_ALL=1`` (set by CI) a fixture whose real dependency is missing
fails the test instead of skipping it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import SynchronousMultiSpanProcessor
from playwright.async_api import Browser, Page, async_playwright
from sqlalchemy import create_engine, text
from temporalio.client import Client
from temporalio.contrib.opentelemetry import create_tracer_provider
from temporalio.service import RPCError, RPCStatusCode

from tests._postgres import postgres_bindir, temporary_postgres
from tracer.collector import Collector, ServeSettings, run_collector
from tracer.db import create_db_engine, upgrade_database
from tracer.demo.fleet import (
    OrderOutcome,
    SampleFleet,
    run_orders,
    run_sample_fleet,
    sample_orders,
)
from tracer.demo.model import ENDPOINTS, NAMESPACES, ORDERS_NAMESPACE, Order
from tracer.devserver import DevServer, find_temporal_cli, free_port
from tracer.store import Store

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

REQUIRE_ALL = os.environ.get("TRACER_REQUIRE_ALL") == "1"
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"


def unique(prefix: str) -> str:
    """A name no other test uses: ``prefix`` and ten random hex digits."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def skip_or_fail(reason: str) -> None:
    """Skip the test, or fail it when CI requires every real dependency."""
    if REQUIRE_ALL:
        pytest.fail(f"{reason} (TRACER_REQUIRE_ALL=1 forbids skipping)")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    """Where tests leave files a person may want to look at (screenshots, logs)."""
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


@pytest.fixture(scope="session")
async def temporal_server(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[DevServer]:
    """A real ``temporal server start-dev`` with the sample's namespaces and Nexus endpoints,
    ready to use.

    Started once per test session on free ports; its log is kept under ``test-artifacts``.
    """
    try:
        find_temporal_cli()
    except FileNotFoundError as err:
        skip_or_fail(str(err))
    ARTIFACTS.mkdir(exist_ok=True)
    server = DevServer(
        namespaces=NAMESPACES,
        endpoints=ENDPOINTS,
        db_file=tmp_path_factory.mktemp("temporal") / "temporal.db",
        log_file=ARTIFACTS / "temporal-server.log",
    )
    server.start()
    try:
        await server.wait_ready()
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def global_spans() -> Iterator[SynchronousMultiSpanProcessor]:
    """The span processors of the process-wide tracer provider, a replay-safe one as the
    SDK's ``OpenTelemetryPlugin`` requires.

    OpenTelemetry sets the global provider once per process, so every test that needs it
    shares this one and adds its own exporter here.
    """
    processors = SynchronousMultiSpanProcessor()
    provider = create_tracer_provider(active_span_processor=processors)
    trace.set_tracer_provider(provider)
    if trace.get_tracer_provider() is not provider:
        skip_or_fail("something else set the global tracer provider first")
    yield processors
    processors.shutdown()


@pytest.fixture(scope="session")
async def temporal_client(temporal_server: DevServer) -> Client:
    """A client on the ``default`` namespace of the session's server."""
    return await Client.connect(temporal_server.address, namespace="default")


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A fresh SQLite database file for one test."""
    return f"sqlite:///{tmp_path / 'tracer.db'}"


def which_or_fail(program: str) -> str:
    """Path of ``program``, or skip/fail when it is not installed."""
    found = shutil.which(program)
    if found is None:
        skip_or_fail(f"{program} is not installed")
    assert found is not None
    return found


@dataclass
class LinkedSample:
    """The sample's orders, run once per session, and a collector that linked them."""

    collector: Collector
    fleet: SampleFleet
    api: httpx.AsyncClient
    outcomes: dict[str, OrderOutcome]
    order_ids: dict[str, str]  # scenario name ("ok", "poll", "declined", "slow") -> order id

    async def tree(self, namespace: str, workflow_id: str) -> dict[str, Any]:
        """The call tree as the JSON API returns it."""
        response = await self.api.get(f"/api/workflows/{namespace}/{workflow_id}/tree")
        response.raise_for_status()
        root: dict[str, Any] = response.json()["root"]
        return root


def _nodes(node: dict[str, Any]) -> list[dict[str, Any]]:
    return [node, *(n for child in node["children"] for n in _nodes(child))]


# Handler workflows an order may start, by namespace (their ids are set by the sample).
_HANDLER_IDS = {"payments": "payment-{}", "notifications": "confirm-{}", "inventory": "stock-{}"}


async def expected_namespaces(
    clients: dict[str, Client], orders: list[Order]
) -> dict[str, set[str]]:
    """For each order, the namespaces where Temporal says it started a workflow.

    Ground truth from the server, not from the scenario: under load a payment can time
    out before its handler ever started a workflow, and then there is no edge to find.
    """
    expected: dict[str, set[str]] = {}
    for order in orders:
        reached = {ORDERS_NAMESPACE}
        for namespace, pattern in _HANDLER_IDS.items():
            try:
                await clients[namespace].get_workflow_handle(pattern.format(order.id)).describe()
            except RPCError as err:
                if err.status != RPCStatusCode.NOT_FOUND:
                    raise
            else:
                reached.add(namespace)
        expected[order.id] = reached
    return expected


async def wait_linked(
    api: httpx.AsyncClient, expected: dict[str, set[str]], timeout: float
) -> set[str]:
    """Wait until each order is closed and its tree reaches the expected namespaces.

    Returns the orders still not there when ``timeout`` runs out.
    """
    deadline = time.monotonic() + timeout
    pending = set(expected)
    while pending and time.monotonic() < deadline:
        for order_id in list(pending):
            response = await api.get(f"/api/workflows/{ORDERS_NAMESPACE}/{order_id}/tree")
            if response.status_code != 200:
                continue
            root = response.json()["root"]
            reached = {n["namespace"] for n in _nodes(root) if n["kind"] == "workflow"}
            if root["status"] != "running" and reached == expected[order_id]:
                pending.discard(order_id)
        if pending:
            await asyncio.sleep(0.2)
    return pending


@pytest.fixture(scope="session")
async def linked_sample(
    temporal_server: DevServer, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[LinkedSample]:
    """Run the sample's four orders and a collector on SQLite until their trees are linked."""
    db_url = f"sqlite:///{tmp_path_factory.mktemp('collector') / 'tracer.db'}"
    settings = ServeSettings(
        db_url=db_url,
        namespaces=list(NAMESPACES),
        temporal_address=temporal_server.address,
        port=free_port(),
        otlp_port=free_port(),
        otlp_grpc_port=0,
        poll_interval=0.3,
    )
    async with (
        run_collector(settings) as collector,
        run_sample_fleet(temporal_server.address, inventory_port=free_port()) as fleet,
        httpx.AsyncClient(base_url=collector.ui_url, timeout=10) as api,
    ):
        tag = uuid.uuid4().hex[:8]
        orders = sample_orders(tag)
        outcomes = await run_orders(fleet.clients[ORDERS_NAMESPACE], orders)
        order_ids = {order.id.rsplit("-", 1)[1]: order.id for order in orders}
        sample = LinkedSample(collector, fleet, api, {o.order_id: o for o in outcomes}, order_ids)
        pending = await wait_linked(
            api, await expected_namespaces(fleet.clients, orders), timeout=60
        )
        assert not pending, f"orders not closed and fully linked within 60 s: {pending}"
        yield sample


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """A real PostgreSQL server (Debian's ``postgresql``) in a temporary cluster.

    Yields the SQLAlchemy URL of its maintenance database; tests create their own.
    """
    bindir = postgres_bindir()
    if bindir is None:
        skip_or_fail("PostgreSQL server binaries (Debian package postgresql) are not installed")
    assert bindir is not None
    with temporary_postgres(bindir) as url:
        yield url


@contextlib.contextmanager
def _new_postgres_database(server_url: str) -> Iterator[str]:
    """Create an empty database on the server, yield its URL, drop it afterwards."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(server_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield server_url.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture
def postgres_url(postgres_server: str) -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test."""
    with _new_postgres_database(postgres_server) as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The same test on a SQLite file and on a real PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'tracer.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    """A migrated, empty store on each database the collector supports."""
    engine = create_db_engine(db_url)
    upgrade_database(engine)
    try:
        yield Store(engine)
    finally:
        engine.dispose()


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def module_db_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """One database shared by a module's tests, on SQLite and on a real PostgreSQL.

    For modules that start a server over the store once (see :func:`module_store`).
    """
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path_factory.mktemp('module-db') / 'tracer.db'}"
        return
    server: str = request.getfixturevalue("postgres_server")
    with _new_postgres_database(server) as url:
        yield url


@pytest.fixture(scope="module")
def module_store(module_db_url: str) -> Iterator[Store]:
    """A migrated store shared by one module's tests, on each database the collector
    supports; each test keeps to ids of its own (a trace id, a workflow id)."""
    engine = create_db_engine(module_db_url)
    upgrade_database(engine)
    try:
        yield Store(engine)
    finally:
        engine.dispose()


@pytest.fixture(scope="session")
async def browser() -> AsyncIterator[Browser]:
    """Debian's Chromium, headless."""
    if not os.path.exists(CHROMIUM):
        skip_or_fail(f"{CHROMIUM} is not installed (Debian package chromium)")
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            await launched.close()


@pytest.fixture
async def page(browser: Browser) -> AsyncIterator[Page]:
    """A fresh page (own cookies) that fails the test on any JavaScript error."""
    context = await browser.new_context(viewport={"width": 1440, "height": 900})
    new_page = await context.new_page()
    errors: list[str] = []
    new_page.on("pageerror", lambda err: errors.append(str(err)))
    new_page.set_default_timeout(10_000)
    try:
        yield new_page
    finally:
        await context.close()
    assert not errors, f"JavaScript errors: {errors}"
