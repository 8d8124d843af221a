"""Nothing is lost: a collector that is down, a Temporal server that restarts."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import httpx
import pytest

from tests.conftest import LinkedSample, expected_namespaces, wait_linked
from tracer.collector import ServeSettings, run_collector
from tracer.demo.fleet import run_orders, run_sample_fleet, sample_orders
from tracer.demo.model import ENDPOINTS, NAMESPACES, ORDERS_NAMESPACE, Order
from tracer.devserver import DevServer, free_port

ORDERS_WHILE_DOWN = 50


def _settings(address: str, db: Path) -> ServeSettings:
    return ServeSettings(
        db_url=f"sqlite:///{db}",
        namespaces=list(NAMESPACES),
        temporal_address=address,
        port=free_port(),
        otlp_port=free_port(),
        otlp_grpc_port=0,
        poll_interval=0.3,
    )


def _orders(count: int) -> list[Order]:
    """``count`` orders cycling through the sample's four scenarios."""
    orders: list[Order] = []
    while len(orders) < count:
        orders.extend(sample_orders(uuid.uuid4().hex[:8]))
    return orders[:count]


async def test_collector_down_while_orders_run_then_restarted_links_every_edge(
    linked_sample: LinkedSample, temporal_server: DevServer, tmp_path: Path
) -> None:
    db = tmp_path / "tracer.db"
    async with run_collector(_settings(temporal_server.address, db)) as collector:
        await collector.linker.poll_once()  # the store has a cursor: this is a restart later
    orders = _orders(ORDERS_WHILE_DOWN)
    client = linked_sample.fleet.clients[ORDERS_NAMESPACE]
    placing = asyncio.create_task(run_orders(client, orders))
    await asyncio.sleep(1.0)  # the collector comes back while orders are still running
    async with (
        run_collector(_settings(temporal_server.address, db)) as collector,
        httpx.AsyncClient(base_url=collector.ui_url, timeout=10) as api,
    ):
        outcomes = await placing
        failing = {o.id for o in orders if o.id.endswith(("-declined", "-slow"))}
        assert {o.order_id for o in outcomes if o.status == "failed"} == failing
        expected = await expected_namespaces(linked_sample.fleet.clients, orders)
        pending = await wait_linked(api, expected, timeout=90)
        assert not pending, f"{len(pending)} of {len(orders)} orders missing edges: {pending}"


@pytest.fixture
async def restartable_server(tmp_path: Path) -> DevServer:
    """A second dev server with a state file, so that it can be stopped and started again."""
    server = DevServer(
        namespaces=NAMESPACES,
        endpoints=ENDPOINTS,
        db_file=tmp_path / "temporal.db",
        log_file=tmp_path / "temporal.log",
    )
    server.start()
    try:
        await server.wait_ready()
        yield server  # type: ignore[misc]
    finally:
        server.stop()


async def test_linker_recovers_when_the_temporal_server_restarts(
    restartable_server: DevServer, tmp_path: Path
) -> None:
    server = restartable_server
    async with (
        run_collector(_settings(server.address, tmp_path / "tracer.db")) as collector,
        run_sample_fleet(server.address, inventory_port=free_port()) as fleet,
        httpx.AsyncClient(base_url=collector.ui_url, timeout=10) as api,
    ):
        before = sample_orders(uuid.uuid4().hex[:8])[:2]
        await run_orders(fleet.clients[ORDERS_NAMESPACE], before)

        server.stop()
        # The linker notices, says so per namespace, and keeps going.
        for _ in range(50):
            states = (await api.get("/api/namespaces")).json()["namespaces"]
            if all(state["status"] == "error" for state in states):
                break
            await asyncio.sleep(0.2)
        assert all(state["status"] == "error" for state in states), states
        assert (await api.get("/healthz")).status_code == 200

        server.start()
        await server.wait_ready()
        after = sample_orders(uuid.uuid4().hex[:8])[:2]
        await asyncio.wait_for(run_orders(fleet.clients[ORDERS_NAMESPACE], after), timeout=60)
        expected = await expected_namespaces(fleet.clients, before + after)
        pending = await wait_linked(api, expected, timeout=60)
        assert not pending, pending
        states = (await api.get("/api/namespaces")).json()["namespaces"]
        assert all(state["status"] == "ok" for state in states), states
