"""``TracingPlugin`` beside the SDK's ``OpenTelemetryPlugin`` on the real dev server.

Each call crosses from one tracing to the other, in both directions: a Nexus call (sync and
async) and an activity wrapper (an activity calls an HTTP API that starts a workflow in
``inventory``). Both plugins use the process-wide replay-safe provider the SDK's plugin
requires, as a user of both would. The API server keeps our middleware and client in both
directions: it is what writes the caller into the handler workflow's history.

For each direction: one trace id from the first client to the last activity; the collector,
fed the spans and the histories, builds the whole tree and places every span that names one
of its runs; the Replayer replays the recorded histories with either plugin.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest
import uvicorn
from fastapi import FastAPI
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.trace import ReadableSpan, SynchronousMultiSpanProcessor
from pydantic import BaseModel
from temporalio.client import Client, WorkflowHistory
from temporalio.contrib.opentelemetry import OpenTelemetryPlugin
from temporalio.plugin import SimplePlugin
from temporalio.worker import Replayer, Worker

import interceptors
import interceptors.http
from interceptors import ATTR, SpanName, TracingPlugin
from tests.conftest import unique
from tracer.db import create_db_engine, upgrade_database
from tracer.devserver import DevServer, free_port
from tracer.domain import NodeKind
from tracer.ingest import request_to_rows
from tracer.link import Connections, HistoryLinker, load_connect_configs
from tracer.query import SpanInfo, TreeNode
from tracer.store import Store

from ._scenario import (
    ChargeWorkflow,
    ChildWorkflow,
    EchoServiceHandler,
    Scenario,
    ScenarioWorkflow,
    charge_card,
    step,
)
from ._wrapper import (
    ReserveWorkflow,
    WrapperActivities,
    WrapperCall,
    WrapperCallerWorkflow,
    reserve_items,
)
from .conftest import collecting, create_endpoint, parent_id, span_id

KEY = "deployment-shared-key"
NAMESPACES = ["orders", "payments", "inventory"]
WORKFLOWS = [
    ScenarioWorkflow,
    ChildWorkflow,
    ChargeWorkflow,
    WrapperCallerWorkflow,
    ReserveWorkflow,
]
# caller's tracing -> handler's tracing
DIRECTIONS = ["ours->sdk", "sdk->ours"]


def plugin(which: str) -> SimplePlugin:
    return TracingPlugin() if which == "ours" else OpenTelemetryPlugin(add_temporal_spans=True)


@dataclass
class Run:
    """One direction's two calls: their root workflow ids and recorded histories."""

    nexus_id: str
    wrapper_id: str
    histories: list[WorkflowHistory] = field(default_factory=list)


@dataclass
class Mixed:
    runs: dict[str, Run]
    spans: list[ReadableSpan]
    store: Store


class Body(BaseModel):
    order_id: str
    wait: bool = True


def create_api(client: Client, task_queues: dict[str, str]) -> FastAPI:
    """The inventory API: ``/{direction}/reservations`` starts ``ReserveWorkflow`` on that
    direction's handler task queue and waits for it."""
    app = FastAPI()
    app.add_middleware(interceptors.http.CallerContextMiddleware, key=KEY)

    @app.post("/{direction}/reservations")
    async def reserve(direction: str, body: Body) -> dict[str, Any]:
        handle = await client.start_workflow(
            ReserveWorkflow.run,
            body.order_id,
            id=f"stock-{body.order_id}",
            task_queue=task_queues[direction],
        )
        return {"workflow_id": handle.id, "status": "completed", **(await handle.result())}

    return app


async def _run_direction(server: DevServer, direction: str, api_url: str, inventory_tq: str) -> Run:
    caller_side, handler_side = direction.split("->")
    connect = Client.connect
    orders = await connect(server.address, namespace="orders", plugins=[plugin(caller_side)])
    payments = await connect(server.address, namespace="payments", plugins=[plugin(handler_side)])
    inventory = await connect(server.address, namespace="inventory", plugins=[plugin(handler_side)])
    endpoint = await create_endpoint(server)
    caller_tq = unique("tt-mix-caller")
    activities = WrapperActivities(f"{api_url}/{direction}", KEY)
    workers = [
        Worker(
            orders,
            task_queue=caller_tq,
            workflows=[ScenarioWorkflow, ChildWorkflow, WrapperCallerWorkflow],
            activities=[step, activities.call_api],
        ),
        Worker(
            payments,
            task_queue=endpoint.task_queue,
            workflows=[ChargeWorkflow],
            activities=[charge_card],
            nexus_service_handlers=[EchoServiceHandler()],
        ),
        Worker(
            inventory,
            task_queue=inventory_tq,
            workflows=[ReserveWorkflow],
            activities=[reserve_items],
        ),
    ]
    run = Run(unique("mix-nexus"), unique("mix-wrap"))
    order_id = unique("o")

    async def go() -> None:
        nexus = await orders.start_workflow(
            ScenarioWorkflow.run,
            Scenario(endpoint.name, caller_tq, wait_for_signal=False, guarded=False),
            id=run.nexus_id,
            task_queue=caller_tq,
        )
        wrapper = await orders.start_workflow(
            WrapperCallerWorkflow.run,
            WrapperCall(order_id=order_id, mode="wait"),
            id=run.wrapper_id,
            task_queue=caller_tq,
        )
        await asyncio.gather(nexus.result(), wrapper.result())
        run.histories = [
            await nexus.fetch_history(),
            await orders.get_workflow_handle(f"{run.nexus_id}-child").fetch_history(),
            await payments.get_workflow_handle(f"charge-{run.nexus_id}").fetch_history(),
            await wrapper.fetch_history(),
            await inventory.get_workflow_handle(f"stock-{order_id}").fetch_history(),
        ]

    async with workers[0], workers[1], workers[2]:
        await go()
    return run


@pytest.fixture(scope="module")
async def mixed(
    temporal_server: DevServer,
    global_spans: SynchronousMultiSpanProcessor,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[Mixed]:
    """Both directions run once, concurrently; their spans and histories go to a collector
    store."""
    inventory_tqs = {direction: unique("tt-mix-inv") for direction in DIRECTIONS}
    api_client = await Client.connect(
        temporal_server.address, namespace="inventory", plugins=[TracingPlugin()]
    )
    port = free_port()
    api = uvicorn.Server(
        uvicorn.Config(
            create_api(api_client, inventory_tqs),
            host="127.0.0.1",
            port=port,
            log_level="warning",
            lifespan="off",
        )
    )
    serving = asyncio.create_task(api.serve())
    try:
        with collecting(global_spans) as exporter:
            while not api.started:
                assert not serving.done(), "API did not start"
                await asyncio.sleep(0.02)
            url = f"http://127.0.0.1:{port}"
            done = await asyncio.gather(
                *(_run_direction(temporal_server, d, url, inventory_tqs[d]) for d in DIRECTIONS)
            )
    finally:
        api.should_exit = True
        await serving
    spans = list(exporter.get_finished_spans())

    engine = create_db_engine(f"sqlite:///{tmp_path_factory.mktemp('mixed') / 'tracer.db'}")
    upgrade_database(engine)
    store = Store(engine)
    store.save_spans(request_to_rows(encode_spans(spans), datetime.now(UTC)).rows)
    configs = load_connect_configs(NAMESPACES, address=temporal_server.address)
    await HistoryLinker(store, Connections(configs)).poll_once()
    try:
        yield Mixed(dict(zip(DIRECTIONS, done, strict=True)), spans, store)
    finally:
        engine.dispose()


def _root_trace(spans: Sequence[ReadableSpan], workflow_id: str) -> list[ReadableSpan]:
    """The spans of the trace the workflow's start opened."""
    start = [
        s
        for s in spans
        if s.name.startswith(SpanName.START_WORKFLOW)
        and s.attributes is not None
        and workflow_id
        in (s.attributes.get(ATTR.WORKFLOW_ID), s.attributes.get(ATTR.SDK_WORKFLOW_ID))
    ]
    assert len(start) == 1, [s.name for s in start]
    assert start[0].context is not None
    trace = start[0].context.trace_id
    return [s for s in spans if s.context is not None and s.context.trace_id == trace]


def _only(spans: Sequence[ReadableSpan], name: str) -> ReadableSpan:
    found = [s for s in spans if s.name == name]
    assert len(found) == 1, f"{name}: {len(found)}; have {sorted(s.name for s in spans)}"
    return found[0]


def _by(spans: Sequence[ReadableSpan], *, ours: bool) -> set[str]:
    """Names of the spans our interceptor wrote (they name their namespace) or the SDK's."""
    return {
        s.name
        for s in spans
        if s.attributes is not None and (ATTR.NAMESPACE in s.attributes) == ours
    }


@pytest.mark.parametrize("direction", DIRECTIONS)
def test_nexus_call_joins_one_trace(mixed: Mixed, direction: str) -> None:
    trace = _root_trace(mixed.spans, mixed.runs[direction].nexus_id)
    names = {s.name for s in trace}
    caller_side = {
        "StartWorkflow:ScenarioWorkflow",
        "RunWorkflow:ScenarioWorkflow",
        "StartChildWorkflow:ChildWorkflow",
        "RunWorkflow:ChildWorkflow",
        "StartNexusOperation:EchoService/quote",
        "StartNexusOperation:EchoService/charge",
    }
    handler_side = {
        "RunStartNexusOperationHandler:EchoService/quote",
        "RunStartNexusOperationHandler:EchoService/charge",
        "StartWorkflow:ChargeWorkflow",
        "RunWorkflow:ChargeWorkflow",
        "StartActivity:charge_card",
        "RunActivity:charge_card",
    }
    assert caller_side | handler_side <= names, sorted(caller_side | handler_side - names)
    ours_called = direction == "ours->sdk"
    assert caller_side <= _by(trace, ours=ours_called)
    # The SDK's Nexus handler spans carry no attributes at all.
    assert handler_side - {n for n in handler_side if "NexusOperationHandler" in n} <= _by(
        trace, ours=not ours_called
    )
    for op in ("quote", "charge"):
        call = _only(trace, f"StartNexusOperation:EchoService/{op}")
        handler = _only(trace, f"RunStartNexusOperationHandler:EchoService/{op}")
        assert parent_id(handler) == span_id(call), op


@pytest.mark.parametrize("direction", DIRECTIONS)
def test_activity_wrapper_joins_one_trace(mixed: Mixed, direction: str) -> None:
    trace = _root_trace(mixed.spans, mixed.runs[direction].wrapper_id)
    run_activity = _only(trace, "RunActivity:call_api")
    post = _only(trace, f"{SpanName.HTTP}POST /{{direction}}/reservations")
    assert parent_id(post) == span_id(run_activity)
    start = _only(trace, "StartWorkflow:ReserveWorkflow")
    assert parent_id(start) == span_id(post)
    assert start.attributes is not None
    assert start.attributes[ATTR.CALLER_WORKFLOW_ID] == mixed.runs[direction].wrapper_id
    run = _only(trace, "RunWorkflow:ReserveWorkflow")
    assert parent_id(run) == span_id(start)
    assert {"StartActivity:reserve_items", "RunActivity:reserve_items"} <= {s.name for s in trace}
    handler_ours = direction == "sdk->ours"
    assert "RunWorkflow:ReserveWorkflow" in _by(trace, ours=handler_ours)
    assert "RunActivity:call_api" in _by(trace, ours=not handler_ours)


def _tree(mixed: Mixed, workflow_id: str) -> tuple[TreeNode, list[SpanInfo]]:
    found = mixed.store.tree_with_spans("orders", workflow_id, scope=None)
    assert found is not None, f"orders/{workflow_id} is not linked"
    return found


def _shape(root: TreeNode) -> set[tuple[str, str, str]]:
    return {(n.kind, n.namespace, n.name) for n in root.walk()}


def _names_a_run(span: ReadableSpan, run_ids: set[str]) -> bool:
    attrs = span.attributes or {}
    return bool({attrs.get(ATTR.RUN_ID), attrs.get(ATTR.SDK_RUN_ID)} & run_ids)


@pytest.mark.parametrize("direction", DIRECTIONS)
def test_collector_tree_is_whole(mixed: Mixed, direction: str) -> None:
    run = mixed.runs[direction]
    nexus, nexus_spans = _tree(mixed, run.nexus_id)
    assert [(n.name, n.status) for n in nexus.walk() if n.status != "completed"] == []
    assert {
        (NodeKind.WORKFLOW, "orders", "ScenarioWorkflow"),
        (NodeKind.CHILD_WORKFLOW, "orders", "ChildWorkflow"),
        (NodeKind.WORKFLOW, "orders", "ChildWorkflow"),
        (NodeKind.WORKFLOW, "payments", "ChargeWorkflow"),
        (NodeKind.ACTIVITY, "payments", "charge_card"),
    } <= _shape(nexus)
    ops = [n for n in nexus.walk() if n.kind == NodeKind.NEXUS_OPERATION]
    assert len(ops) == 2 and all(op.children for op in ops), [op.to_json() for op in ops]

    wrapper, wrapper_spans = _tree(mixed, run.wrapper_id)
    [call] = [n for n in wrapper.walk() if n.kind == NodeKind.ACTIVITY and n.name == "call_api"]
    [handler] = call.children
    assert (handler.namespace, handler.name, handler.link) == (
        "inventory",
        "ReserveWorkflow",
        "activity_wrapper",
    )
    assert handler.verified

    # Every span that names one of a tree's runs, ours or the SDK's, is placed in it.
    for root, placed in ((nexus, nexus_spans), (wrapper, wrapper_spans)):
        run_ids = {n.run_id for n in root.walk() if n.run_id}
        expected = {format(span_id(s), "016x") for s in mixed.spans if _names_a_run(s, run_ids)}
        assert expected and expected <= {s.span_id for s in placed}
        assert len({s.trace_id for s in placed}) == 1


async def test_replayer_replays_with_either_plugin(
    mixed: Mixed, global_spans: SynchronousMultiSpanProcessor
) -> None:
    histories = [h for run in mixed.runs.values() for h in run.histories]
    with collecting(global_spans) as exporter:
        for which in ("ours", "sdk"):
            replayer = Replayer(workflows=WORKFLOWS, plugins=[plugin(which)])
            for history in histories:
                result = await replayer.replay_workflow(history, raise_on_replay_failure=True)
                assert result.replay_failure is None, (which, history.workflow_id)
    assert exporter.get_finished_spans() == ()  # replays add no spans


def test_plugin_passes_opentelemetry_through_the_sandbox() -> None:
    from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner

    tracing = TracingPlugin()
    runner = tracing.workflow_runner
    assert callable(runner)
    configured = runner(SandboxedWorkflowRunner())
    assert isinstance(configured, SandboxedWorkflowRunner)
    assert {"opentelemetry", "interceptors"} <= configured.restrictions.passthrough_modules
    assert isinstance(tracing.interceptor, interceptors.TracingInterceptor)
