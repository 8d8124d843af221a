"""Calls that hang, on the real dev server: the tree says why, while the caller still waits.

A sync handler that keeps failing, an async handler workflow stuck on a failing activity,
and a call into a task queue nobody polls. The tree API reads Temporal's pending state
(``DescribeWorkflowExecution``) when what the store holds is older than a couple of
seconds, so each running call carries ``pending``: state, attempt, last failure with its
cause chain, next attempt. On SQLite and PostgreSQL (the store keeps that state).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.async_api import Page, expect
from temporalio.client import Client
from temporalio.worker import Worker

from tests.conftest import unique
from tests.security.conftest import serve
from tracer.devserver import DevServer, NexusEndpoint, create_nexus_endpoints
from tracer.link import Connections, HistoryLinker, load_connect_configs
from tracer.store import Store
from web import WebSettings, create_app

from ._pending_workflows import (
    LEDGER_DOWN,
    PROCESSOR_DOWN,
    ChargeWorkflow,
    LedgerServiceHandler,
    SettleWorkflow,
    charge_card,
)

NAMESPACES = ["orders", "payments"]


@dataclass
class Env:
    address: str
    orders: Client
    payments: Client
    served: str  # an endpoint whose task queue has a worker
    unserved: str  # an endpoint whose task queue nobody polls
    unserved_queue: str
    caller_queue: str


@pytest.fixture(scope="module")
async def env(temporal_server: DevServer) -> AsyncIterator[Env]:
    orders = await Client.connect(temporal_server.address, namespace="orders")
    payments = await Client.connect(temporal_server.address, namespace="payments")
    served, handler_queue = unique("tt-pending"), unique("tt-pending-handler")
    unserved, unserved_queue = unique("tt-pending-nobody"), unique("tt-pending-nobody")
    await create_nexus_endpoints(
        orders,
        [
            NexusEndpoint(served, "payments", handler_queue),
            NexusEndpoint(unserved, "payments", unserved_queue),
        ],
    )
    caller_queue = unique("tt-pending-caller")
    async with (
        Worker(
            payments,
            task_queue=handler_queue,
            workflows=[ChargeWorkflow],
            activities=[charge_card],
            nexus_service_handlers=[LedgerServiceHandler()],
        ),
        Worker(orders, task_queue=caller_queue, workflows=[SettleWorkflow]),
    ):
        yield Env(
            temporal_server.address,
            orders,
            payments,
            served,
            unserved,
            unserved_queue,
            caller_queue,
        )


def _nodes(node: dict[str, Any]) -> list[dict[str, Any]]:
    return [node, *(n for child in node["children"] for n in _nodes(child))]


def _chain(failure: dict[str, Any] | None) -> list[str]:
    """Every message of a failure and its causes."""
    messages = []
    while failure is not None:
        messages.append(failure["message"])
        failure = failure["cause"]
    return messages


async def test_hanging_calls_say_why(
    env: Env, store: Store, page: Page, artifacts_dir: Path
) -> None:
    ids = {case: unique(f"settle-{case}") for case in ("failing", "stuck", "nobody")}
    handles = [
        await env.orders.start_workflow(
            SettleWorkflow.run, args=[endpoint, operation], id=ids[case], task_queue=queue
        )
        for case, endpoint, operation, queue in (
            ("failing", env.served, "post", env.caller_queue),
            ("stuck", env.served, "charge", env.caller_queue),
            ("nobody", env.unserved, "post", env.caller_queue),
        )
    ]
    connections = Connections(load_connect_configs(NAMESPACES, address=env.address))
    linker = HistoryLinker(
        store, Connections(load_connect_configs(NAMESPACES, address=env.address))
    )
    app = create_app(store, WebSettings(connections=connections))
    found: dict[str, dict[str, Any]] = {}
    try:
        with serve(app) as url:
            async with httpx.AsyncClient(base_url=url, timeout=15) as api:
                deadline = time.monotonic() + 40
                while len(found) < 3:
                    assert time.monotonic() < deadline, f"still waiting for {set(ids) - set(found)}"
                    await linker.poll_once()
                    for case, workflow_id in ids.items():
                        answer = await api.get(f"/api/workflows/orders/{workflow_id}/tree")
                        if answer.status_code == 200 and _done(case, answer.json()["root"]):
                            found[case] = answer.json()["root"]
                    await asyncio.sleep(0.5)
                # The linker describes the runs it reads with calls in flight, when its
                # budget has room (discovery's reads may have spent it): within a few passes.
                failing_run = handles[0].result_run_id or ""
                deadline = time.monotonic() + 20
                while not linker.calls.by_method["DescribeWorkflowExecution"]:
                    assert time.monotonic() < deadline, "the linker described no run in flight"
                    await asyncio.to_thread(store.request_refresh, [("orders", failing_run)])
                    await linker.poll_once()
                    await asyncio.sleep(0.5)
                pollers = (
                    await api.get(
                        "/api/diagnosis",
                        params={"namespace": "payments", "task_queue": env.unserved_queue},
                    )
                ).json()["pollers"]
                # On the page, without a click: the badge and the reason under the row.
                await page.goto(f"{url}/workflows/orders/{ids['failing']}")
                row = page.locator(".node[data-kind='nexus_operation']").first
                await expect(row.locator(".badge.waiting").first).to_contain_text("retrying")
                await expect(row.locator(".wait-line").first).to_contain_text(LEDGER_DOWN)
                await page.locator("main").screenshot(path=str(artifacts_dir / "pending.png"))
                await page.goto(f"{url}/workflows/orders/{ids['nobody']}")
                lonely_row = page.locator(".node[data-kind='nexus_operation']").first
                await expect(lonely_row.locator(".badge.waiting").first).to_have_text("no worker")
    finally:
        for handle in handles:
            await handle.terminate("test over")
        # The handler workflow outlives its terminated caller: end it too.
        await env.payments.get_workflow_handle(f"charge-{ids['stuck']}").terminate("test over")

    # The sync handler keeps raising: backing off, its own message at the end of the chain.
    (call,) = [n for n in found["failing"]["children"] if n["kind"] == "nexus_operation"]
    assert call["status"] == "running"
    assert call["pending"]["state"] == "backing_off"
    assert call["pending"]["attempt"] >= 2 and call["details"]["attempt"] >= 2
    assert LEDGER_DOWN in _chain(call["pending"]["last_failure"])[-1]
    assert call["pending"]["next_attempt_time"] is not None

    # The async handler started, and its workflow is stuck on a failing activity.
    stuck = [n for n in _nodes(found["stuck"]) if n["kind"] == "activity"]
    (charge,) = stuck
    assert charge["namespace"] == "payments" and charge["status"] == "running"
    assert charge["pending"]["attempt"] >= 2
    assert charge["pending"]["last_failure"]["type"] == "ProcessorUnavailable"
    assert charge["pending"]["last_failure"]["message"] == PROCESSOR_DOWN

    # Nobody polls the endpoint's task queue: the call is pending, and the diagnosis says
    # that no worker polls it.
    (lonely,) = [n for n in found["nobody"]["children"] if n["kind"] == "nexus_operation"]
    assert lonely["pending"]["state"] in ("scheduled", "backing_off")
    assert lonely["children"] == []
    assert pollers == {"workflow": [], "nexus": []}

    # Once the callers are gone, nothing is pending any more.
    await linker.poll_once()
    for case, workflow_id in ids.items():
        root = store.tree("orders", workflow_id, scope=None)
        assert root is not None and root.status == "terminated", case
        assert all(node.pending is None for node in root.walk()), case


def _done(case: str, root: dict[str, Any]) -> bool:
    """Whether the tree shows what the case is waiting to show."""
    nodes = _nodes(root)
    if case == "failing":
        return any(
            (n["pending"] or {}).get("attempt", 0) >= 2 and n["pending"]["last_failure"]
            for n in nodes
            if n["kind"] == "nexus_operation"
        )
    if case == "stuck":
        return any(
            (n["pending"] or {}).get("attempt", 0) >= 2 and n["pending"]["last_failure"]
            for n in nodes
            if n["kind"] == "activity"
        )
    return any(n["pending"] for n in nodes if n["kind"] == "nexus_operation")
