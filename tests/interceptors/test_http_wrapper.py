"""Activity wrappers through a real FastAPI app on a real port, called with httpx from an
activity: both variants (wait; start then poll), and forged, expired and unsigned claims."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest
import uvicorn
from fastapi import FastAPI
from opentelemetry.trace import SpanKind
from pydantic import BaseModel
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.worker import Worker

import interceptors
import interceptors.http
from interceptors import ATTR, CALLER_HEADER, decode_caller_header
from tests.conftest import unique
from tracer.devserver import DevServer, free_port

from ._wrapper import (
    ReserveWorkflow,
    WrapperActivities,
    WrapperCall,
    WrapperCallerWorkflow,
    reserve_items,
)
from .conftest import Otel, named, one, parent_id, span_id

KEY = "deployment-shared-key"


class Body(BaseModel):
    order_id: str
    wait: bool = True


def create_api(client: Client, task_queue: str, otel: Otel) -> FastAPI:
    app = FastAPI()
    app.add_middleware(
        interceptors.http.CallerContextMiddleware, key=KEY, tracer_provider=otel.provider
    )

    @app.post("/reservations")
    async def reserve(body: Body) -> dict[str, Any]:
        api_caller = interceptors.caller_info()  # the middleware made the claim current
        assert api_caller is not None and api_caller.kind == "activity_wrapper"
        handle = await client.start_workflow(
            ReserveWorkflow.run, body.order_id, id=f"stock-{body.order_id}", task_queue=task_queue
        )
        if not body.wait:
            return {"workflow_id": handle.id, "status": "started"}
        return {"workflow_id": handle.id, "status": "completed", **(await handle.result())}

    @app.get("/reservations/{workflow_id}")
    async def status(workflow_id: str) -> dict[str, Any]:
        handle = client.get_workflow_handle(workflow_id)
        if (await handle.describe()).status == WorkflowExecutionStatus.RUNNING:
            return {"workflow_id": workflow_id, "status": "running"}
        return {"workflow_id": workflow_id, "status": "completed", **(await handle.result())}

    return app


@contextlib.asynccontextmanager
async def running_fleet(server: DevServer, otel: Otel) -> AsyncIterator[tuple[Client, str]]:
    tracing = interceptors.TracingInterceptor(otel.provider)
    orders = await Client.connect(server.address, namespace="orders", interceptors=[tracing])
    inventory = await Client.connect(server.address, namespace="inventory", interceptors=[tracing])
    orders_tq, inventory_tq, port = unique("tt-wrap-o"), unique("tt-wrap-i"), free_port()
    api = uvicorn.Server(
        uvicorn.Config(
            create_api(inventory, inventory_tq, otel),
            host="127.0.0.1",
            port=port,
            log_level="warning",
            lifespan="off",
        )
    )
    serving = asyncio.create_task(api.serve())
    activities = WrapperActivities(f"http://127.0.0.1:{port}", KEY)
    try:
        while not api.started:
            assert not serving.done(), "API did not start"
            await asyncio.sleep(0.02)
        async with (
            Worker(
                orders,
                task_queue=orders_tq,
                workflows=[WrapperCallerWorkflow],
                activities=[activities.call_api],
            ),
            Worker(
                inventory,
                task_queue=inventory_tq,
                workflows=[ReserveWorkflow],
                activities=[reserve_items],
            ),
        ):
            yield orders, orders_tq
    finally:
        api.should_exit = True
        await serving


async def _call(fleet: tuple[Client, str], mode: str) -> tuple[str, str, dict[str, Any]]:
    orders, task_queue = fleet
    wid = unique(f"wrap-{mode}")
    order_id = unique("o")
    handle = await orders.start_workflow(
        WrapperCallerWorkflow.run,
        WrapperCall(order_id=order_id, mode=mode),
        id=wid,
        task_queue=task_queue,
    )
    return wid, order_id, await handle.result()


async def _started_header(server: DevServer, order_id: str) -> interceptors.CallerInfo:
    inventory = await Client.connect(server.address, namespace="inventory")
    history = await inventory.get_workflow_handle(f"stock-{order_id}").fetch_history()
    started = history.events[0].workflow_execution_started_event_attributes
    caller = decode_caller_header(started.header.fields[CALLER_HEADER])
    assert caller is not None
    return caller


async def test_wrapper_wait_and_poll(temporal_server: DevServer, otel: Otel) -> None:
    async with running_fleet(temporal_server, otel) as fleet:
        wait_wid, wait_order, waited = await _call(fleet, "wait")
        poll_wid, poll_order, polled = await _call(fleet, "poll")
    assert waited["reservation_id"] == f"res-{wait_order}"
    assert polled["reservation_id"] == f"res-{poll_order}"
    # caller_info() inside the started workflow: verified, from the header.
    assert (waited["caller_namespace"], waited["caller_verified"]) == ("orders", True)

    spans = otel.spans()
    for wid, order_id in ((wait_wid, wait_order), (poll_wid, poll_order)):
        caller = await _started_header(temporal_server, order_id)
        run_activity = next(
            s
            for s in named(spans, "RunActivity:call_api")
            if s.attributes is not None and s.attributes[ATTR.WORKFLOW_ID] == wid
        )
        assert run_activity.context is not None
        assert (caller.kind, caller.namespace, caller.workflow_id) == (
            "activity_wrapper",
            "orders",
            wid,
        )
        assert caller.run_id and caller.activity_id and caller.activity_type == "call_api"
        assert caller.attempt == 1
        assert (caller.verified, caller.reason) == (True, None)
        assert caller.traceparent == (
            f"00-{run_activity.context.trace_id:032x}-{run_activity.context.span_id:016x}-01"
        )
        # RunActivity -> HTTP POST -> StartWorkflow (with caller attrs) -> RunWorkflow
        post = next(
            s
            for s in named(spans, "HTTP POST /reservations")
            if parent_id(s) == span_id(run_activity)
        )
        assert post.kind == SpanKind.SERVER
        assert post.attributes is not None and post.attributes[ATTR.CALLER_VERIFIED] is True
        start = next(
            s
            for s in named(spans, "StartWorkflow:ReserveWorkflow")
            if parent_id(s) == span_id(post)
        )
        assert start.attributes is not None
        assert start.attributes[ATTR.NAMESPACE] == "inventory"
        assert start.attributes[ATTR.CALLER_NAMESPACE] == "orders"
        assert start.attributes[ATTR.CALLER_WORKFLOW_ID] == wid
        run = next(
            s for s in named(spans, "RunWorkflow:ReserveWorkflow") if parent_id(s) == span_id(start)
        )
        assert run.attributes is not None and run.attributes[ATTR.NAMESPACE] == "inventory"

    # Polls are traced as calls on the same workflow, under the polling activity.
    poll_activity = next(
        s
        for s in named(spans, "RunActivity:call_api")
        if s.attributes is not None and s.attributes[ATTR.WORKFLOW_ID] == poll_wid
    )
    gets = [
        s
        for s in named(spans, "HTTP GET /reservations/{workflow_id}")
        if parent_id(s) == span_id(poll_activity)
    ]
    assert gets
    describes = [
        s for s in named(spans, "DescribeWorkflow") if parent_id(s) in {span_id(g) for g in gets}
    ]
    assert describes
    assert all(
        d.attributes is not None and d.attributes[ATTR.WORKFLOW_ID] == f"stock-{poll_order}"
        for d in describes
    )


@pytest.mark.parametrize(
    ("mode", "reason"),
    [("forged", "bad signature"), ("expired", "expired"), ("unsigned", "unsigned")],
)
async def test_untrusted_claims_are_kept_but_unverified(
    temporal_server: DevServer, otel: Otel, mode: str, reason: str
) -> None:
    async with running_fleet(temporal_server, otel) as fleet:
        wid, order_id, result = await _call(fleet, mode)
    assert (result["caller_verified"], result["caller_reason"]) == (False, reason)
    caller = await _started_header(temporal_server, order_id)
    assert (caller.workflow_id, caller.verified, caller.reason) == (wid, False, reason)
    post = one(otel.spans(), "HTTP POST /reservations")
    assert post.attributes is not None
    assert post.attributes[ATTR.CALLER_VERIFIED] is False
    assert post.attributes[ATTR.CALLER_REASON] == reason
