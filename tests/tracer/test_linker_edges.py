"""Edges beyond Nexus: child workflows, and signals and updates over HTTP, on each database."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from sqlalchemy import select
from temporalio import activity
from temporalio.api.common.v1 import Payload
from temporalio.client import (
    Client,
    Interceptor,
    OutboundInterceptor,
    StartWorkflowInput,
    WorkflowHandle,
)
from temporalio.worker import Worker

from interceptors import (
    CALLER_HEADER,
    LINK_KEY_ENV,
    CallerInfo,
    TracingInterceptor,
    encode_caller_header,
)
from interceptors.http import CallerContextMiddleware, async_httpx_hooks
from tracer.db import Link
from tracer.devserver import DevServer, free_port
from tracer.link import Connections, HistoryLinker, load_connect_configs
from tracer.store import Store

from ._edge_workflows import (
    ChildWorkflow,
    MailboxWorkflow,
    NotifierWorkflow,
    ParentWorkflow,
    leaf,
)


async def test_child_workflows_hang_under_their_start_calls(
    temporal_server: DevServer, store: Store
) -> None:
    client = await Client.connect(temporal_server.address, namespace="orders")
    task_queue = f"edges-{uuid.uuid4().hex[:8]}"
    parent_id = f"parent-{uuid.uuid4().hex[:8]}"
    async with Worker(
        client, task_queue=task_queue, workflows=[ParentWorkflow, ChildWorkflow], activities=[leaf]
    ):
        result = await client.execute_workflow(
            ParentWorkflow.run, ["a", "boom"], id=parent_id, task_queue=task_queue
        )
    assert result == ["a", "failed"]

    linker = HistoryLinker(
        store, Connections(load_connect_configs(["orders"], address=temporal_server.address))
    )
    await linker.poll_once()
    root = store.tree("orders", f"{parent_id}-child-1", scope=None)
    assert root is not None
    tree = root.to_json()
    assert (tree["workflow_id"], tree["status"]) == (parent_id, "completed")
    starts = [child for child in tree["children"] if child["kind"] == "child_workflow"]
    assert [(c["name"], c["status"]) for c in starts] == [
        ("ChildWorkflow", "completed"),
        ("ChildWorkflow", "failed"),
    ]
    children = [start["children"][0] for start in starts]
    assert [(c["workflow_id"], c["link"], c["namespace"]) for c in children] == [
        (f"{parent_id}-child-0", "child", "orders"),
        (f"{parent_id}-child-1", "child", "orders"),
    ]
    assert children[1]["error"] == {"type": "LeafError", "message": "leaf failed"}
    assert [a["name"] for a in children[1]["children"]] == ["leaf"]


def mailbox_api(client: Client) -> FastAPI:
    """The mailbox team's API: signals and updates their workflow for other namespaces."""
    app = FastAPI()
    app.add_middleware(CallerContextMiddleware)

    @app.post("/mailbox/{workflow_id}")
    async def deposit(workflow_id: str) -> dict[str, int]:
        handle = client.get_workflow_handle(workflow_id)
        await handle.signal(MailboxWorkflow.deposit, "parcel")
        return {"count": await handle.execute_update(MailboxWorkflow.count)}

    return app


async def test_signals_and_updates_sent_over_http_hang_under_the_activity(
    temporal_server: DevServer, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(LINK_KEY_ENV, "edge-test-key")
    tracing = [TracingInterceptor()]
    inventory = await Client.connect(
        temporal_server.address, namespace="inventory", interceptors=tracing
    )
    orders = await Client.connect(temporal_server.address, namespace="orders", interceptors=tracing)
    queue, suffix = f"edges-{uuid.uuid4().hex[:8]}", uuid.uuid4().hex[:8]
    port = free_port()
    api = uvicorn.Server(
        uvicorn.Config(mailbox_api(inventory), host="127.0.0.1", port=port, log_level="warning")
    )
    serving = asyncio.create_task(api.serve())

    @activity.defn(name="notify_mailbox")
    async def notify_mailbox(mailbox_id: str) -> int:
        async with httpx.AsyncClient(event_hooks=async_httpx_hooks()) as http:
            response = await http.post(f"http://127.0.0.1:{port}/mailbox/{mailbox_id}")
            response.raise_for_status()
            return int(response.json()["count"])

    try:
        async with (
            Worker(inventory, task_queue=queue, workflows=[MailboxWorkflow]),
            Worker(
                orders, task_queue=queue, workflows=[NotifierWorkflow], activities=[notify_mailbox]
            ),
        ):
            mailbox = await inventory.start_workflow(
                MailboxWorkflow.run, id=f"mailbox-{suffix}", task_queue=queue
            )
            count = await orders.execute_workflow(
                NotifierWorkflow.run, mailbox.id, id=f"notifier-{suffix}", task_queue=queue
            )
            assert count == 1 and await mailbox.result() == ["parcel"]
    finally:
        api.should_exit = True
        await serving

    configs = load_connect_configs(["orders", "inventory"], address=temporal_server.address)
    await HistoryLinker(store, Connections(configs)).poll_once()
    notifier = store.tree("orders", f"notifier-{suffix}", scope=None)
    own = store.tree("inventory", f"mailbox-{suffix}", scope=None)
    assert notifier is not None and own is not None
    [call] = notifier.to_json()["children"]
    assert call["name"] == "notify_mailbox"
    sent = [(c["kind"], c["namespace"], c["name"], c["workflow_id"]) for c in call["children"]]
    assert sent == [
        ("signal", "inventory", "deposit", f"mailbox-{suffix}"),
        ("update", "inventory", "count", f"mailbox-{suffix}"),
    ]
    assert all(c["link"] == "activity_wrapper" and c["verified"] for c in call["children"])
    # Being signalled does not make the mailbox part of the notifier's tree.
    assert own.workflow_id == f"mailbox-{suffix}" and own.link == "root"


class _ForgeCaller(Interceptor):
    """A client that writes a caller header of its own making into the workflows it starts."""

    def __init__(self, header: Payload) -> None:
        self.header = header

    def intercept_client(self, next: OutboundInterceptor) -> OutboundInterceptor:
        header = self.header

        class Outbound(OutboundInterceptor):
            async def start_workflow(self, input: StartWorkflowInput) -> WorkflowHandle[Any, Any]:
                input.headers = {**input.headers, CALLER_HEADER: header}
                return await super().start_workflow(input)

        return Outbound(next)


async def test_a_forged_caller_header_is_shown_unverified(
    temporal_server: DevServer, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(LINK_KEY_ENV, "the-deployment-key")
    suffix = uuid.uuid4().hex[:8]
    claimed = CallerInfo(
        kind="activity_wrapper",
        namespace="orders",
        workflow_id=f"caller-{suffix}",
        run_id=f"run-{suffix}",
        activity_id="1",
        verified=True,  # the forger says so
    )
    headers = {
        "forged": encode_caller_header(claimed, key="a-key-the-forger-guessed"),
        "unsigned": _unsigned(claimed),
        "signed": encode_caller_header(claimed),  # what our interceptor writes
    }
    queue = f"edges-{uuid.uuid4().hex[:8]}"
    for name, header in headers.items():
        client = await Client.connect(
            temporal_server.address, namespace="inventory", interceptors=[_ForgeCaller(header)]
        )
        async with Worker(client, task_queue=queue, workflows=[ChildWorkflow], activities=[leaf]):
            await client.execute_workflow(
                ChildWorkflow.run, name, id=f"{name}-{suffix}", task_queue=queue
            )
    configs = load_connect_configs(["inventory"], address=temporal_server.address)
    await HistoryLinker(store, Connections(configs)).poll_once()
    with store.session() as session:
        links = {
            link.handler_workflow_id.split("-")[0]: link
            for link in session.scalars(
                select(Link).where(Link.caller_workflow_id == f"caller-{suffix}")
            )
        }
    assert {name: links[name].verified for name in headers} == {
        "forged": False,
        "unsigned": False,
        "signed": True,
    }


def _unsigned(info: CallerInfo) -> Payload:
    return encode_caller_header(info, key=b"")  # an empty key means: no signature
