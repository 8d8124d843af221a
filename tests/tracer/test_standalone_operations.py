"""Standalone Nexus operations, started by a client with no workflow, on the real dev server.

Each is the root of its own tree: an async one with its handler workflow below it, a sync
one with a ``nexus_handler`` node in the endpoint's namespace. Asking for the handler
workflow's tree roots it at the operation, search lists them under ``kind=nexus_operation``,
and a running one carries its pending state. On SQLite and PostgreSQL.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx
import pytest
from temporalio.client import Client
from temporalio.worker import Worker

from tests.conftest import unique
from tests.security.conftest import serve
from tracer.devserver import DevServer, NexusEndpoint, create_nexus_endpoints
from tracer.link import Connections, HistoryLinker, load_connect_configs
from tracer.store import Store
from web import WebSettings, create_app

from ._standalone_workflows import DECLINED, RefundService, RefundServiceHandler, RefundWorkflow

NAMESPACES = ["orders", "payments"]


@dataclass
class Env:
    address: str
    orders: Client
    endpoint: str
    handler_queue: str


@pytest.fixture(scope="module")
async def env(temporal_server: DevServer) -> AsyncIterator[Env]:
    orders = await Client.connect(temporal_server.address, namespace="orders")
    payments = await Client.connect(temporal_server.address, namespace="payments")
    endpoint, queue = unique("tt-standalone"), unique("tt-standalone-handler")
    await create_nexus_endpoints(orders, [NexusEndpoint(endpoint, "payments", queue)])
    async with Worker(
        payments,
        task_queue=queue,
        workflows=[RefundWorkflow],
        nexus_service_handlers=[RefundServiceHandler()],
    ):
        yield Env(temporal_server.address, orders, endpoint, queue)


def _nodes(node: dict[str, Any]) -> list[dict[str, Any]]:
    return [node, *(n for child in node["children"] for n in _nodes(child))]


async def test_standalone_operations_root_their_trees(env: Env, store: Store) -> None:
    nexus = env.orders.create_nexus_client(service=RefundService, endpoint=env.endpoint)
    order = unique("order")
    ids = {case: unique(f"op-{case}") for case in ("async", "sync", "declined")}
    timeout = timedelta(seconds=30)
    refund = await nexus.start_operation(
        RefundService.refund, order, id=ids["async"], schedule_to_close_timeout=timeout
    )
    await nexus.start_operation(
        RefundService.quote, order, id=ids["sync"], schedule_to_close_timeout=timeout
    )
    await nexus.start_operation(
        RefundService.quote, f"bad-{order}", id=ids["declined"], schedule_to_close_timeout=timeout
    )
    assert await refund.result() == f"refunded {order}"

    connections = Connections(load_connect_configs(NAMESPACES, address=env.address))
    linker = HistoryLinker(store, connections)
    app = create_app(store, WebSettings(connections=connections))
    with serve(app) as url:
        async with httpx.AsyncClient(base_url=url, timeout=15) as api:
            trees: dict[str, dict[str, Any]] = {}
            deadline = time.monotonic() + 40
            while len(trees) < 3:
                assert time.monotonic() < deadline, f"not linked: {set(ids) - set(trees)}"
                await linker.poll_once()  # lists standalone operations every few seconds
                for case, operation_id in ids.items():
                    answer = await api.get(f"/api/nexus-operations/orders/{operation_id}/tree")
                    if answer.status_code == 200 and _settled(case, answer.json()["root"]):
                        trees[case] = answer.json()["root"]
                await asyncio.sleep(0.3)

            # Async: the handler workflow hangs under the operation, in payments.
            root = trees["async"]
            assert (root["kind"], root["namespace"], root["status"]) == (
                "nexus_operation",
                "orders",
                "completed",
            )
            assert root["name"] == f"{env.endpoint}/RefundService/refund"
            assert root["details"]["operation_id"] == ids["async"]
            (handler,) = root["children"]
            assert (handler["kind"], handler["namespace"], handler["workflow_id"]) == (
                "workflow",
                "payments",
                f"refund-{order}",
            )
            # Asking for the handler's tree roots it at the operation.
            via_handler = await api.get(f"/api/workflows/payments/refund-{order}/tree")
            assert via_handler.json()["root"]["details"]["operation_id"] == ids["async"]

            # Sync: a nexus_handler node in the endpoint's namespace.
            (sync_handler,) = trees["sync"]["children"]
            assert (sync_handler["kind"], sync_handler["namespace"]) == (
                "nexus_handler",
                "payments",
            )
            assert trees["sync"]["status"] == "completed"
            declined = trees["declined"]
            assert declined["status"] == "failed"
            assert DECLINED in declined["error"]["message"]

            # Search lists them, and only them under kind=nexus_operation.
            await asyncio.to_thread(store.refresh_summaries)
            listed = (await api.get("/api/traces", params={"kind": "nexus_operation"})).json()
            found = {row["workflow_id"]: row for row in listed["traces"]}
            assert set(ids.values()) <= set(found)
            assert all(row["kind"] == "nexus_operation" for row in listed["traces"])
            assert found[ids["declined"]]["error_count"] == 1
            workflows = (await api.get("/api/traces", params={"kind": "workflow"})).json()
            assert not set(ids.values()) & {row["workflow_id"] for row in workflows["traces"]}

            # The page, and a workflow URL with an operation's id finds nothing.
            page = await api.get(f"/nexus-operations/orders/{ids['async']}")
            assert page.status_code == 200
            assert "RefundWorkflow" in page.text and "RefundService/refund" in page.text
            assert (await api.get(f"/api/workflows/orders/{ids['async']}/tree")).status_code == 404


def _settled(case: str, root: dict[str, Any]) -> bool:
    if root["status"] == "running":
        return False
    if case == "async":
        return any(node["kind"] == "workflow" for node in _nodes(root))
    return True
