"""Replay safety (no-cache workers, the Replayer on recorded histories), a mixed fleet with
the SDK's own TracingInterceptor, and an exporter that is down."""

from __future__ import annotations

import time
from collections import Counter

from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from temporalio.client import Client, WorkflowHistory
from temporalio.contrib.opentelemetry import TracingInterceptor as SdkTracingInterceptor
from temporalio.worker import Replayer, Worker

import interceptors
from interceptors import ATTR
from tests.conftest import unique
from tracer.devserver import DevServer, free_port

from ._scenario import (
    ChargeWorkflow,
    ChildWorkflow,
    EchoServiceHandler,
    Scenario,
    ScenarioWorkflow,
    charge_card,
    step,
)
from .conftest import Endpoint, Otel, one, parent_id, span_id

EXPECTED_ONCE = [
    "StartWorkflow:ScenarioWorkflow",
    "RunWorkflow:ScenarioWorkflow",
    "StartChildWorkflow:ChildWorkflow",
    "RunWorkflow:ChildWorkflow",
    "StartNexusOperation:EchoService/quote",
    "RunStartNexusOperationHandler:EchoService/quote",
    "StartNexusOperation:EchoService/charge",
    "RunStartNexusOperationHandler:EchoService/charge",
    "StartWorkflow:ChargeWorkflow",
    "RunWorkflow:ChargeWorkflow",
    "StartActivity:charge_card",
    "RunActivity:charge_card",
]


async def _run_scenario(
    server: DevServer,
    endpoint: Endpoint,
    orders_interceptors: list[object],
    payments_interceptors: list[object],
    starter_interceptors: list[object],
    *,
    max_cached_workflows: int = 1000,
) -> tuple[str, list[WorkflowHistory]]:
    connect = Client.connect
    orders = await connect(server.address, namespace="orders", interceptors=orders_interceptors)  # type: ignore[arg-type]
    payments = await connect(
        server.address,
        namespace="payments",
        interceptors=payments_interceptors,  # type: ignore[arg-type]
    )
    starter = await connect(
        server.address,
        namespace="orders",
        interceptors=starter_interceptors,  # type: ignore[arg-type]
    )
    tq, child_tq, wid = unique("tt-rp"), unique("tt-rp-child"), unique("replay")
    async with (
        Worker(
            orders,
            task_queue=tq,
            workflows=[ScenarioWorkflow],
            activities=[step],
            max_cached_workflows=max_cached_workflows,
        ),
        Worker(
            orders,
            task_queue=child_tq,
            workflows=[ChildWorkflow],
            activities=[step],
            max_cached_workflows=max_cached_workflows,
        ),
        Worker(
            payments,
            task_queue=endpoint.task_queue,
            workflows=[ChargeWorkflow],
            activities=[charge_card],
            nexus_service_handlers=[EchoServiceHandler()],
            max_cached_workflows=max_cached_workflows,
        ),
    ):
        handle = await starter.start_workflow(
            ScenarioWorkflow.run,
            Scenario(endpoint=endpoint.name, child_task_queue=child_tq, wait_for_signal=False),
            id=wid,
            task_queue=tq,
        )
        await handle.result()
    histories = [
        await handle.fetch_history(),
        await orders.get_workflow_handle(f"{wid}-child").fetch_history(),
        await payments.get_workflow_handle(f"charge-{wid}").fetch_history(),
    ]
    return wid, histories


async def test_no_cache_worker_and_replayer_add_no_spans(
    temporal_server: DevServer, echo_endpoint: Endpoint, otel: Otel
) -> None:
    tracing = interceptors.TracingInterceptor(otel.provider)
    # max_cached_workflows=0: every workflow task replays the whole history first.
    wid, histories = await _run_scenario(
        temporal_server, echo_endpoint, [tracing], [tracing], [tracing], max_cached_workflows=0
    )
    spans = otel.spans()
    counts = Counter(s.name for s in spans)
    for name in EXPECTED_ONCE:
        assert counts[name] == 1, (name, counts)
    assert counts["StartActivity:step"] == 2 and counts["RunActivity:step"] == 2
    assert len({span_id(s) for s in spans}) == len(spans)
    run = one(spans, "RunWorkflow:ScenarioWorkflow")
    # Calls made in different (replayed) tasks all hang off the same run span.
    for name in (
        "StartChildWorkflow:ChildWorkflow",
        "StartNexusOperation:EchoService/quote",
        "StartNexusOperation:EchoService/charge",
    ):
        assert parent_id(one(spans, name)) == span_id(run), name

    replay_otel = Otel.fresh()
    replayer = Replayer(
        workflows=[ScenarioWorkflow, ChildWorkflow, ChargeWorkflow],
        interceptors=[interceptors.TracingInterceptor(replay_otel.provider)],
    )
    for history in histories:
        result = await replayer.replay_workflow(history, raise_on_replay_failure=True)
        assert result.replay_failure is None
    assert replay_otel.spans() == []
    # Histories recorded with our interceptor also replay without it, and vice versa.
    plain = Replayer(workflows=[ScenarioWorkflow, ChildWorkflow, ChargeWorkflow])
    for history in histories:
        await plain.replay_workflow(history)
    _ = wid


async def test_mixed_fleet_with_sdk_interceptor(
    temporal_server: DevServer, echo_endpoint: Endpoint, otel: Otel
) -> None:
    ours = interceptors.TracingInterceptor(otel.provider)
    sdk = SdkTracingInterceptor(otel.provider.get_tracer("sdk"))
    # The client that starts the workflow runs the SDK's interceptor, the orders worker
    # ours, the payments worker (Nexus handler) the SDK's.
    wid, histories = await _run_scenario(temporal_server, echo_endpoint, [ours], [sdk], [sdk])
    spans = otel.spans()
    sdk_start = one(spans, "StartWorkflow:ScenarioWorkflow")
    assert sdk_start.attributes is not None and "temporalWorkflowID" in sdk_start.attributes
    run = one(spans, "RunWorkflow:ScenarioWorkflow")
    assert run.attributes is not None and run.attributes[ATTR.NAMESPACE] == "orders"
    assert parent_id(run) == span_id(sdk_start)  # SDK client -> our workflow
    call_quote = one(spans, "StartNexusOperation:EchoService/quote")
    sdk_handler = one(spans, "RunStartNexusOperationHandler:EchoService/quote")
    assert parent_id(sdk_handler) == span_id(call_quote)  # our caller -> SDK handler
    call_charge = one(spans, "StartNexusOperation:EchoService/charge")
    sdk_charge_handler = one(spans, "RunStartNexusOperationHandler:EchoService/charge")
    assert parent_id(sdk_charge_handler) == span_id(call_charge)
    # And back: the SDK-traced handler workflow's activity runs on... the SDK worker; our
    # caller-side span still receives the operation token.
    assert call_charge.attributes is not None and call_charge.attributes[ATTR.OPERATION_TOKEN]
    # The SDK Nexus handler used require_caller_namespace() without our interceptor: the
    # fallback read the server-written nexus-link and let "orders" in.
    assert len(histories) == 3
    _ = wid


async def test_exporter_down_neither_fails_nor_slows(
    temporal_server: DevServer, echo_endpoint: Endpoint
) -> None:
    async def timed(interceptor_list: list[object]) -> float:
        orders = await Client.connect(
            temporal_server.address,
            namespace="orders",
            interceptors=interceptor_list,  # type: ignore[arg-type]
        )
        tq = unique("tt-down")
        async with Worker(orders, task_queue=tq, workflows=[ChildWorkflow], activities=[step]):
            began = time.monotonic()
            for _ in range(5):
                await orders.execute_workflow(
                    ChildWorkflow.run, "x", id=unique("down"), task_queue=tq
                )
            return time.monotonic() - began

    baseline = await timed([])
    closed_port = free_port()  # nothing listens there
    provider = TracerProvider()
    exporter = OTLPSpanExporter(endpoint=f"http://127.0.0.1:{closed_port}/v1/traces", timeout=1)
    processor = BatchSpanProcessor(exporter, schedule_delay_millis=50)
    provider.add_span_processor(processor)
    traced = await timed([interceptors.TracingInterceptor(provider)])
    assert traced < baseline * 2 + 1.0, (baseline, traced)
    exporter.shutdown()
