"""In-flight truth on the real dev server, with workflows in the shapes of Temporal's
``nexus_cancel`` and ``nexus_messaging`` samples.

- Calls a closed caller left running end as their handlers did, else ``abandoned``.
- Signals and updates a Nexus handler sends hang under that handler; the target stays in
  its own tree.
- Spans of workers that run only the SDK's own tracing get their run's namespace.

The first two read histories only (plain clients, no interceptors), on SQLite.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import SynchronousMultiSpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from sqlalchemy import select
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowFailureError, WorkflowHandle
from temporalio.contrib.opentelemetry import (
    OpenTelemetryPlugin,
    TracingInterceptor,
)
from temporalio.worker import Worker

from tests.conftest import unique
from tracer.collector import ServeSettings, run_collector
from tracer.db import Span, create_db_engine, upgrade_database
from tracer.devserver import DevServer, NexusEndpoint, create_nexus_endpoints, free_port
from tracer.domain import NodeKind, Status
from tracer.link import Connections, HistoryLinker, load_connect_configs
from tracer.query import TreeNode, figures_of, iso_time
from tracer.store import Store

from ._edge_workflows import ChildWorkflow, leaf
from ._in_flight_workflows import (
    FirstGreetingWorkflow,
    GiveUpWorkflow,
    GreetingServiceHandler,
    GreetingWorkflow,
    ItemsServiceHandler,
    ItemsWorkflow,
    LeaveChildWorkflow,
    ShopperWorkflow,
)

NAMESPACES = ["orders", "payments"]


@dataclass
class Env:
    """This module's endpoint, clients and task queues; workers run for the whole module."""

    address: str
    endpoint: str
    orders: Client
    payments: Client
    handler_queue: str  # the endpoint's, where the entity workflow runs too
    caller_queue: str


@pytest.fixture(scope="module")
async def env(temporal_server: DevServer) -> AsyncIterator[Env]:
    orders = await Client.connect(temporal_server.address, namespace="orders")
    payments = await Client.connect(temporal_server.address, namespace="payments")
    # A Nexus endpoint of this module's own, on a task queue of its own.
    endpoint, handler_queue = unique("tt-inflight"), unique("tt-inflight-handler")
    await create_nexus_endpoints(orders, [NexusEndpoint(endpoint, "payments", handler_queue)])
    caller_queue = unique("tt-inflight-caller")
    async with (
        Worker(
            payments,
            task_queue=handler_queue,
            workflows=[GreetingWorkflow, ItemsWorkflow],
            nexus_service_handlers=[GreetingServiceHandler(), ItemsServiceHandler()],
        ),
        Worker(
            orders,
            task_queue=caller_queue,
            workflows=[
                FirstGreetingWorkflow,
                GiveUpWorkflow,
                LeaveChildWorkflow,
                ShopperWorkflow,
                GreetingWorkflow,
            ],
        ),
    ):
        yield Env(temporal_server.address, endpoint, orders, payments, handler_queue, caller_queue)


@pytest.fixture
def sqlite_store(sqlite_url: str) -> Iterator[Store]:
    engine = create_db_engine(sqlite_url)
    upgrade_database(engine)
    try:
        yield Store(engine)
    finally:
        engine.dispose()


async def link(env: Env, store: Store) -> None:
    """One linker pass over both namespaces (reads what changed since the last one)."""
    configs = load_connect_configs(NAMESPACES, address=env.address)
    await HistoryLinker(store, Connections(configs)).poll_once()


def tree(store: Store, namespace: str, workflow_id: str) -> TreeNode:
    root = store.tree(namespace, workflow_id, scope=None)
    assert root is not None, f"{namespace}/{workflow_id} is not linked"
    return root


def calls(root: TreeNode, kind: str = NodeKind.NEXUS_OPERATION) -> list[TreeNode]:
    return [child for child in root.children if child.kind == kind]


async def until(check: Callable[[], Awaitable[bool]], what: str, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        await asyncio.sleep(0.1)


async def has_event(handle: WorkflowHandle[Any, Any], event_type: EventType.ValueType) -> bool:
    history = await handle.fetch_history()
    return any(event.event_type == event_type for event in history.events)


async def close_time(handle: WorkflowHandle[Any, Any]) -> str | None:
    """When Temporal says the run closed, in the contract's time format."""
    return iso_time((await handle.describe()).close_time)


# --- calls left in flight ----------------------------------------------------------------


async def test_cancelled_operations_end_as_their_handlers_did(
    env: Env, sqlite_store: Store
) -> None:
    caller_id = unique("first-greeting")
    # The first greeting answers at once; the other two would take a minute.
    assert (
        await env.orders.execute_workflow(
            FirstGreetingWorkflow.run,
            args=[env.endpoint, [0.0, 60.0, 60.0]],
            id=caller_id,
            task_queue=env.caller_queue,
        )
        == f"Hello {caller_id}-0"
    )
    caller = env.orders.get_workflow_handle(caller_id)
    losers = [env.payments.get_workflow_handle(f"greeting-{caller_id}-{i}") for i in (1, 2)]
    history = await caller.fetch_history()
    last_word = [e.event_type for e in history.events if "NEXUS" in EventType.Name(e.event_type)]
    # The caller asked to cancel and returned: its history never says how they ended.
    assert last_word[-2:] == [EventType.EVENT_TYPE_NEXUS_OPERATION_CANCEL_REQUEST_COMPLETED] * 2
    for loser in losers:
        assert await has_event(loser, EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CANCEL_REQUESTED)

    # The handlers are still cleaning up: nothing is final, the calls are abandoned.
    await link(env, sqlite_store)
    won, *lost = calls(tree(sqlite_store, "orders", caller_id))
    assert (won.status, won.end_time is not None) == (Status.COMPLETED, True)
    caller_end = await close_time(caller)
    for call, loser in zip(lost, losers, strict=True):
        assert (call.status, iso_time(call.end_time)) == (Status.ABANDONED, caller_end)
        assert [(c.workflow_id, c.status) for c in call.children] == [(loser.id, Status.RUNNING)]

    for loser in losers:
        await loser.signal(GreetingWorkflow.release)
        with pytest.raises(WorkflowFailureError):
            await loser.result()
    await link(env, sqlite_store)
    root = tree(sqlite_store, "orders", caller_id)
    _, *lost = calls(root)
    for call, loser in zip(lost, losers, strict=True):
        handler_end = await close_time(loser)
        assert (call.status, iso_time(call.end_time)) == (Status.CANCELED, handler_end)
        assert caller_end is not None and handler_end is not None and handler_end > caller_end
        assert [c.status for c in call.children] == [Status.CANCELED]
    assert [n.name for n in root.walk() if n.status == Status.RUNNING] == []
    assert figures_of(root).error_count == 0


async def test_calls_given_up_on_and_a_child_left_running(env: Env, sqlite_store: Store) -> None:
    giver, leaver = unique("give-up"), unique("leave-child")
    # Gives up on a sync and an async greeting (no cancel request), returns at once.
    await env.orders.execute_workflow(
        GiveUpWorkflow.run, args=[env.endpoint, 1.0], id=giver, task_queue=env.caller_queue
    )
    await env.orders.execute_workflow(
        LeaveChildWorkflow.run, id=leaver, task_queue=env.caller_queue
    )
    handler = env.payments.get_workflow_handle(f"greeting-{giver}-greet")
    child = env.orders.get_workflow_handle(f"{leaver}-child")
    giver_end = await close_time(env.orders.get_workflow_handle(giver))
    leaver_end = await close_time(env.orders.get_workflow_handle(leaver))

    await handler.result()  # the async handler goes on, and finishes after its caller
    await link(env, sqlite_store)
    sync, run_op = calls(tree(sqlite_store, "orders", giver))
    # Nothing records the sync handler's answer: abandoned when its caller closed.
    assert (sync.name, sync.status, iso_time(sync.end_time), sync.children) == (
        f"{env.endpoint}/GreetingService/greet_now",
        Status.ABANDONED,
        giver_end,
        [],
    )
    assert (run_op.status, iso_time(run_op.end_time)) == (
        Status.COMPLETED,
        await close_time(handler),
    )
    # The child outlives its parent (abandon policy): abandoned while it runs...
    [start] = calls(tree(sqlite_store, "orders", leaver), NodeKind.CHILD_WORKFLOW)
    assert (start.status, iso_time(start.end_time)) == (Status.ABANDONED, leaver_end)
    assert [(c.workflow_id, c.status) for c in start.children] == [(child.id, Status.RUNNING)]
    # ...and, once it is done, ended as it did.
    await child.signal(GreetingWorkflow.release)
    await child.result()
    await link(env, sqlite_store)
    [start] = calls(tree(sqlite_store, "orders", leaver), NodeKind.CHILD_WORKFLOW)
    assert (start.status, iso_time(start.end_time)) == (Status.COMPLETED, await close_time(child))


# --- messages sent by Nexus handlers -----------------------------------------------------


async def test_signals_and_updates_a_handler_sent_hang_under_it(
    env: Env, sqlite_store: Store
) -> None:
    entity = await env.payments.start_workflow(
        ItemsWorkflow.run, id=unique("items"), task_queue=env.handler_queue
    )
    shopper = unique("shopper")
    await env.orders.execute_workflow(
        ShopperWorkflow.run,
        args=[env.endpoint, entity.id, True],
        id=shopper,
        task_queue=env.caller_queue,
    )
    await entity.signal(ItemsWorkflow.release)
    await entity.signal(ItemsWorkflow.finish)
    await entity.result()
    # What the server linked back to which of the shopper's calls (by scheduling event).
    linked: dict[int, list[tuple[str, str]]] = {}
    for event in (await entity.fetch_history()).events:
        for found in event.links:
            if event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED:
                name = event.workflow_execution_signaled_event_attributes.signal_name
                message = (NodeKind.SIGNAL, name)
            else:
                accepted = event.workflow_execution_update_accepted_event_attributes
                message = (NodeKind.UPDATE, accepted.accepted_request.input.name)
            linked.setdefault(found.workflow_event.event_ref.event_id, []).append(message)
    # Seen with SDK 1.35: the signal and both update-backed operations' updates; a sync
    # handler's plain execute_update carries no link.
    assert sorted(m for found in linked.values() for m in found) == [
        ("signal", "approve"),
        ("update", "add"),
        ("update", "add_later"),
    ]

    await link(env, sqlite_store)
    root = tree(sqlite_store, "orders", shopper)
    entity_run = (await entity.describe()).run_id
    ops = calls(root)
    assert [op.name.rsplit("/", 1)[1] for op in ops] == [
        "approve",
        "add",
        "add_by_update",
        "add_later_by_update",
    ]
    for op in ops:
        # Under the sync handler that sent them, or, with no handler node (an update
        # operation left running), under the call itself.
        handlers = [c for c in op.children if c.kind == NodeKind.NEXUS_HANDLER]
        home = handlers[0] if handlers else op
        sent = [c for c in home.children if c.kind in (NodeKind.SIGNAL, NodeKind.UPDATE)]
        assert [(m.kind, m.name) for m in sent] == linked.get(op.details["event_id"], []), op.name
        for message in sent:
            assert (message.namespace, message.workflow_id, message.run_id) == (
                "payments",
                entity.id,
                entity_run,
            )
    approve, add, _, add_later = ops
    assert [c.kind for c in approve.children] == [NodeKind.NEXUS_HANDLER]
    assert [c.kind for c in add.children] == [NodeKind.NEXUS_HANDLER]
    # The caller closed on the update operation: abandoned, its update shown below it.
    assert add_later.status == Status.ABANDONED
    assert [c.kind for c in add_later.children] == [NodeKind.UPDATE]
    # The entity stays in its own tree.
    own = tree(sqlite_store, "payments", entity.id)
    assert (own.run_id, own.link, own.children) == (entity_run, "root", [])
    assert entity_run not in {n.run_id for n in root.walk() if n.kind == NodeKind.WORKFLOW}


# --- spans of workers that run only the SDK's own tracing ---------------------------------


async def test_spans_without_a_namespace_get_their_runs(
    temporal_server: DevServer,
    tmp_path: Path,
    global_spans: SynchronousMultiSpanProcessor,
) -> None:
    settings = ServeSettings(
        db_url=f"sqlite:///{tmp_path / 'tracer.db'}",
        namespaces=["orders"],
        temporal_address=temporal_server.address,
        port=free_port(),
        otlp_port=free_port(),
        poll_interval=3600,  # this test decides when the linker reads histories
    )
    async with run_collector(settings) as collector:

        async def first_pass_done() -> bool:
            state = await asyncio.to_thread(collector.store.namespace_state, "orders")
            return state is not None and state.last_poll_at is not None

        # Its one pass at start is over before the runs below exist.
        await until(first_pass_done, "the linker's first pass", timeout=60)
        # Exported from a thread of its own: the receiver answers on this event loop.
        export = BatchSpanProcessor(
            OTLPSpanExporter(endpoint=f"{collector.otlp_url}/v1/traces"),
            schedule_delay_millis=100,
        )
        legacy = TracerProvider()
        legacy.add_span_processor(export)
        global_spans.add_span_processor(export)
        runs = {
            "interceptor": await run_child(
                await Client.connect(
                    temporal_server.address,
                    namespace="orders",
                    interceptors=[TracingInterceptor(legacy.get_tracer("worker"))],
                )
            ),
            "plugin": await run_child(
                await Client.connect(
                    temporal_server.address,
                    namespace="orders",
                    plugins=[OpenTelemetryPlugin(add_temporal_spans=True)],
                )
            ),
        }
        store = collector.store

        def spans_of(run_id: str) -> list[tuple[str, str | None]]:
            with store.session() as session:
                return [
                    (name, namespace)
                    for name, namespace in session.execute(
                        select(Span.name, Span.namespace).where(Span.run_id == run_id)
                    )
                ]

        async def received(run_id: str) -> bool:
            names = {name.split(":")[0] for name, _ in spans_of(run_id)}
            return {"RunWorkflow", "RunActivity"} <= names

        await asyncio.to_thread(export.force_flush)
        for how, (_, run_id) in runs.items():
            await until(lambda run_id=run_id: received(run_id), f"the {how} worker's spans")
            # Stored before the linker knew their run: no namespace names it yet.
            assert {namespace for _, namespace in spans_of(run_id)} == {None}, how

        await collector.linker.poll_once()  # the runs are linked; the summaries job walks

        async def placed(run_id: str) -> bool:
            return {namespace for _, namespace in spans_of(run_id)} == {"orders"}

        for how, (workflow_id, run_id) in runs.items():
            await until(lambda run_id=run_id: placed(run_id), f"the {how} spans' namespace")
            found = await asyncio.to_thread(
                store.tree_with_spans, "orders", workflow_id, scope=None
            )
            assert found is not None
            _, spans = found
            mine = [s for s in spans if s.run_id == run_id]
            assert {s.name.split(":")[0] for s in mine} >= {"RunWorkflow", "RunActivity"}, how
            assert {s.namespace for s in mine} == {"orders"}, how
        await asyncio.to_thread(export.shutdown)


async def run_child(client: Client) -> tuple[str, str]:
    """Run a workflow with one activity on a worker of ``client``; ``(workflow id, run id)``."""
    queue, workflow_id = unique("tt-sdk-tracing"), unique("sdk-traced")
    async with Worker(client, task_queue=queue, workflows=[ChildWorkflow], activities=[leaf]):
        handle = await client.start_workflow(
            ChildWorkflow.run, "traced", id=workflow_id, task_queue=queue
        )
        assert await handle.result() == "traced"
    assert handle.result_run_id is not None
    return workflow_id, handle.result_run_id
