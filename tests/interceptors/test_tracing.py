"""Every call kind across two namespaces on a real server: span tree and attributes."""

from __future__ import annotations

import asyncio
import uuid

from opentelemetry.trace import SpanKind, StatusCode
from temporalio.client import Client
from temporalio.worker import Worker

import interceptors
from interceptors import ATTR, CALLER_HEADER, decode_caller_header
from tests.conftest import unique
from tracer.devserver import DevServer

from ._scenario import (
    CancelCallerWorkflow,
    ChargeWorkflow,
    ChildWorkflow,
    EchoServiceHandler,
    FailingWorkflow,
    HoldWorkflow,
    Scenario,
    ScenarioWorkflow,
    charge_card,
    step,
)
from .conftest import Endpoint, Otel, named, one, parent_id, span_id, trace_id


async def _clients(
    server: DevServer, tracing: interceptors.TracingInterceptor
) -> tuple[Client, Client]:
    orders = await Client.connect(server.address, namespace="orders", interceptors=[tracing])
    payments = await Client.connect(server.address, namespace="payments", interceptors=[tracing])
    return orders, payments


async def test_cross_namespace_span_tree(
    temporal_server: DevServer, echo_endpoint: Endpoint, otel: Otel
) -> None:
    tracing = interceptors.TracingInterceptor(otel.provider)
    orders, payments = await _clients(temporal_server, tracing)
    tq, child_tq = unique("tt-orders"), unique("tt-child")
    wid = unique("scenario")
    async with (
        Worker(orders, task_queue=tq, workflows=[ScenarioWorkflow], activities=[step]),
        Worker(orders, task_queue=child_tq, workflows=[ChildWorkflow], activities=[step]),
        Worker(
            payments,
            task_queue=echo_endpoint.task_queue,
            workflows=[ChargeWorkflow],
            activities=[charge_card],
            nexus_service_handlers=[EchoServiceHandler()],
        ),
    ):
        handle = await orders.start_workflow(
            ScenarioWorkflow.run,
            Scenario(endpoint=echo_endpoint.name, child_task_queue=child_tq),
            id=wid,
            task_queue=tq,
        )
        await handle.signal(ScenarioWorkflow.go, "now")
        assert await handle.execute_update(ScenarioWorkflow.bump, 2) == 2
        result = await handle.result()
        assert await handle.query("__stack_trace") is not None or True

    assert result.charged == f"pay-{wid}:nexus:orders"  # caller_info() in the handler workflow
    assert result.guarded_error == "unauthorized"
    assert result.quote == 3.0

    spans = otel.spans()
    # No duplicates: every span id is unique.
    assert len({span_id(s) for s in spans}) == len(spans)
    start = one(spans, "StartWorkflow:ScenarioWorkflow")
    run = one(spans, "RunWorkflow:ScenarioWorkflow")
    assert start.kind == SpanKind.CLIENT and run.kind == SpanKind.SERVER
    assert parent_id(run) == span_id(start)
    # One trace for the workflow's tree; the signal/update/query client calls, made
    # outside any span, are roots of their own traces (handlers link back to them).
    others = {s.name for s in spans if trace_id(s) != trace_id(start)}
    assert others == {
        "SignalWorkflow:go",
        "StartWorkflowUpdate:bump",
        "QueryWorkflow:__stack_trace",
    }
    # Real duration: the run covers everything the workflow did.
    assert run.start_time is not None and run.end_time is not None
    assert run.end_time - run.start_time > 0
    for attr, value in {
        ATTR.NAMESPACE: "orders",
        ATTR.WORKFLOW_ID: wid,
        ATTR.RUN_ID: handle.result_run_id,
        ATTR.WORKFLOW_TYPE: "ScenarioWorkflow",
        ATTR.TASK_QUEUE: tq,
    }.items():
        assert run.attributes is not None and run.attributes[attr] == value, attr
    assert start.attributes is not None and start.attributes[ATTR.RUN_ID] == handle.result_run_id

    # Activity: StartActivity (workflow) -> RunActivity (worker), with type, id, attempt.
    start_step = next(s for s in named(spans, "StartActivity:step") if parent_id(s) == span_id(run))
    run_step = next(
        s for s in named(spans, "RunActivity:step") if parent_id(s) == span_id(start_step)
    )
    assert run_step.attributes is not None
    assert run_step.attributes[ATTR.ACTIVITY_TYPE] == "step"
    assert run_step.attributes[ATTR.ATTEMPT] == 1
    assert run_step.attributes[ATTR.ACTIVITY_ID]
    assert run_step.attributes[ATTR.NAMESPACE] == "orders"
    assert run_step.attributes[ATTR.WORKFLOW_ID] == wid

    # Child workflow in the same namespace.
    start_child = one(spans, "StartChildWorkflow:ChildWorkflow")
    run_child = one(spans, "RunWorkflow:ChildWorkflow")
    assert parent_id(start_child) == span_id(run)
    assert parent_id(run_child) == span_id(start_child)
    assert run_child.attributes is not None
    assert run_child.attributes[ATTR.WORKFLOW_ID] == f"{wid}-child"
    assert run_child.attributes[ATTR.TASK_QUEUE] == child_tq

    # Sync Nexus operation: caller span in orders, handler span in payments.
    call_quote = one(spans, "StartNexusOperation:EchoService/quote")
    handle_quote = one(spans, "RunStartNexusOperationHandler:EchoService/quote")
    assert parent_id(call_quote) == span_id(run)
    assert parent_id(handle_quote) == span_id(call_quote)
    assert call_quote.attributes is not None and handle_quote.attributes is not None
    assert call_quote.attributes[ATTR.ENDPOINT] == echo_endpoint.name
    assert call_quote.attributes[ATTR.SERVICE] == "EchoService"
    assert call_quote.attributes[ATTR.OPERATION] == "quote"
    assert call_quote.attributes[ATTR.NAMESPACE] == "orders"
    hq = handle_quote.attributes
    assert hq[ATTR.NAMESPACE] == "payments"
    assert hq[ATTR.ENDPOINT] == echo_endpoint.name
    assert hq[ATTR.REQUEST_ID]
    assert hq[ATTR.CALLER_NAMESPACE] == "orders"
    assert hq[ATTR.CALLER_WORKFLOW_ID] == wid
    assert hq[ATTR.CALLER_RUN_ID] == handle.result_run_id
    assert hq[ATTR.CALLER_VERIFIED] is True
    assert hq[ATTR.OUTCOME] == "completed"

    # Async Nexus operation: token on both sides, handler workflow under the handler span,
    # the caller identity persisted in the handler workflow's header.
    call_charge = one(spans, "StartNexusOperation:EchoService/charge")
    handle_charge = one(spans, "RunStartNexusOperationHandler:EchoService/charge")
    start_charge = one(spans, "StartWorkflow:ChargeWorkflow")
    run_charge = one(spans, "RunWorkflow:ChargeWorkflow")
    assert parent_id(handle_charge) == span_id(call_charge)
    assert parent_id(start_charge) == span_id(handle_charge)
    assert parent_id(run_charge) == span_id(start_charge)
    assert call_charge.attributes is not None and handle_charge.attributes is not None
    token = handle_charge.attributes[ATTR.OPERATION_TOKEN]
    assert token and call_charge.attributes[ATTR.OPERATION_TOKEN] == token
    assert handle_charge.attributes[ATTR.REQUEST_ID]
    assert run_charge.attributes is not None and run_charge.attributes[ATTR.NAMESPACE] == "payments"
    # The caller span lasts until the result arrived, so it ends after the handler run.
    assert call_charge.end_time is not None and run_charge.end_time is not None
    assert call_charge.end_time >= run_charge.start_time  # type: ignore[operator]
    charge_handle = payments.get_workflow_handle(f"charge-{wid}")
    history = await charge_handle.fetch_history()
    started = history.events[0].workflow_execution_started_event_attributes
    caller = decode_caller_header(started.header.fields[CALLER_HEADER])
    assert caller is not None
    assert (caller.kind, caller.namespace, caller.workflow_id, caller.verified) == (
        "nexus",
        "orders",
        wid,
        True,
    )
    assert caller.request_id == handle_charge.attributes[ATTR.REQUEST_ID]
    assert caller.operation == "charge" and caller.service == "EchoService"

    # Unauthorized: ERROR on both sides with the error kind.
    call_guarded = one(spans, "StartNexusOperation:EchoService/guarded")
    handle_guarded = one(spans, "RunStartNexusOperationHandler:EchoService/guarded")
    for span in (call_guarded, handle_guarded):
        assert span.status.status_code == StatusCode.ERROR
        assert span.attributes is not None
        assert span.attributes[ATTR.ERROR_KIND] == "unauthorized"

    # Signal and update: client spans and workflow handler spans linked to them.
    signal_client = one(spans, "SignalWorkflow:go")
    signal_handler = one(spans, "HandleSignal:go")
    assert parent_id(signal_handler) == span_id(run)
    assert [link.context.span_id for link in signal_handler.links] == [span_id(signal_client)]
    update_client = one(spans, "StartWorkflowUpdate:bump")
    update_handler = one(spans, "HandleUpdate:bump")
    assert parent_id(update_handler) == span_id(run)
    assert [link.context.span_id for link in update_handler.links] == [span_id(update_client)]
    assert signal_client.attributes is not None
    assert signal_client.attributes[ATTR.NAMESPACE] == "orders"


async def test_failed_workflow_and_query_spans(temporal_server: DevServer, otel: Otel) -> None:
    tracing = interceptors.TracingInterceptor(otel.provider)
    orders = await Client.connect(
        temporal_server.address, namespace="orders", interceptors=[tracing]
    )
    tq = unique("tt-fail")
    async with Worker(orders, task_queue=tq, workflows=[FailingWorkflow]):
        handle = await orders.start_workflow(FailingWorkflow.run, id=unique("fail"), task_queue=tq)
        try:
            await handle.result()
        except Exception:
            pass
        else:  # pragma: no cover
            raise AssertionError("workflow should fail")
        await handle.describe()
    spans = otel.spans()
    run = one(spans, "RunWorkflow:FailingWorkflow")
    assert run.status.status_code == StatusCode.ERROR
    assert run.attributes is not None
    assert run.attributes[ATTR.OUTCOME] == "failed"
    assert run.attributes[ATTR.ERROR_TYPE] == "Boom"
    assert run.attributes[ATTR.ERROR_KIND] == "operation_error"
    describe = one(spans, "DescribeWorkflow")
    assert describe.attributes is not None and describe.attributes[ATTR.OUTCOME] == "failed"
    _ = (asyncio, uuid)


async def test_nexus_cancel_handler_span(
    temporal_server: DevServer, echo_endpoint: Endpoint, otel: Otel
) -> None:
    tracing = interceptors.TracingInterceptor(otel.provider)
    orders, payments = await _clients(temporal_server, tracing)
    tq, wid = unique("tt-cancel"), unique("cancel")
    async with (
        Worker(orders, task_queue=tq, workflows=[CancelCallerWorkflow]),
        Worker(
            payments,
            task_queue=echo_endpoint.task_queue,
            workflows=[HoldWorkflow],
            nexus_service_handlers=[EchoServiceHandler()],
        ),
    ):
        kind = await orders.execute_workflow(
            CancelCallerWorkflow.run, echo_endpoint.name, id=wid, task_queue=tq
        )
    assert kind == "canceled"
    spans = otel.spans()
    call = one(spans, "StartNexusOperation:EchoService/hold")
    start = one(spans, "RunStartNexusOperationHandler:EchoService/hold")
    cancel = one(spans, "RunCancelNexusOperationHandler:EchoService/hold")
    hold = one(spans, "RunWorkflow:HoldWorkflow")
    assert call.attributes is not None and start.attributes is not None
    assert cancel.attributes is not None and hold.attributes is not None
    token = start.attributes[ATTR.OPERATION_TOKEN]
    assert cancel.attributes[ATTR.OPERATION_TOKEN] == token
    assert call.attributes[ATTR.OPERATION_TOKEN] == token
    assert cancel.attributes[ATTR.NAMESPACE] == "payments"
    assert parent_id(cancel) == span_id(call)  # the cancel request carries the caller's trace
    assert call.status.status_code == StatusCode.ERROR
    assert call.attributes[ATTR.ERROR_KIND] == "canceled"
    assert hold.attributes[ATTR.OUTCOME] == "canceled"
