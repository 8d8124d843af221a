"""Workflows, activities and a Nexus service the interceptor tests run on a real server.

Two namespaces: the caller workflows run in ``orders``, the Nexus handler and the
workflows it starts in ``payments``. Endpoint names are passed in the input so each test
module can use its own endpoint and task queues on the shared server.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import timedelta

import nexusrpc
import nexusrpc.handler
from temporalio import activity, nexus, workflow
from temporalio.exceptions import ApplicationError, NexusOperationError

with workflow.unsafe.imports_passed_through():
    import interceptors


@dataclass
class Charge:
    order_id: str
    amount: float


@dataclass
class Scenario:
    endpoint: str
    child_task_queue: str
    wait_for_signal: bool = True
    guarded: bool = True
    slow_seconds: float = 0.0


@dataclass
class ScenarioResult:
    quote: float
    charged: str
    child: str
    guarded_error: str | None
    bumps: int
    signals: list[str] = field(default_factory=list)


@nexusrpc.service
class EchoService:
    quote: nexusrpc.Operation[Charge, float]
    charge: nexusrpc.Operation[Charge, str]
    guarded: nexusrpc.Operation[Charge, str]
    hold: nexusrpc.Operation[Charge, str]


@activity.defn
async def step(name: str) -> str:
    return f"step-{name}"


@activity.defn
async def charge_card(charge: Charge) -> str:
    return f"pay-{charge.order_id}"


@workflow.defn
class ChargeWorkflow:
    @workflow.run
    async def run(self, charge: Charge) -> str:
        caller = interceptors.caller_info()
        payment = await workflow.execute_activity(
            charge_card, charge, start_to_close_timeout=timedelta(seconds=10)
        )
        return f"{payment}:{caller.kind if caller else None}:{caller.namespace if caller else None}"


@workflow.defn
class HoldWorkflow:
    @workflow.run
    async def run(self, charge: Charge) -> str:
        await workflow.sleep(timedelta(minutes=5))
        return charge.order_id


@nexusrpc.handler.service_handler(service=EchoService)
class EchoServiceHandler:
    @nexusrpc.handler.sync_operation
    async def quote(self, ctx: nexusrpc.handler.StartOperationContext, charge: Charge) -> float:
        caller = interceptors.require_caller_namespace("orders")
        assert caller.workflow_id
        return round(charge.amount * 0.03, 2)

    @nexus.workflow_run_operation
    async def charge(
        self, ctx: nexus.WorkflowRunOperationContext, charge: Charge
    ) -> nexus.WorkflowHandle[str]:
        return await ctx.start_workflow(ChargeWorkflow.run, charge, id=f"charge-{charge.order_id}")

    @nexusrpc.handler.sync_operation
    async def guarded(self, ctx: nexusrpc.handler.StartOperationContext, charge: Charge) -> str:
        interceptors.require_caller_namespace("admin")
        return "never"

    @nexus.workflow_run_operation
    async def hold(
        self, ctx: nexus.WorkflowRunOperationContext, charge: Charge
    ) -> nexus.WorkflowHandle[str]:
        return await ctx.start_workflow(HoldWorkflow.run, charge, id=f"hold-{charge.order_id}")


@workflow.defn
class ChildWorkflow:
    @workflow.run
    async def run(self, name: str) -> str:
        return await workflow.execute_activity(
            step, f"child-{name}", start_to_close_timeout=timedelta(seconds=10)
        )


@workflow.defn
class ScenarioWorkflow:
    def __init__(self) -> None:
        self.signals: list[str] = []
        self.bumps = 0

    @workflow.signal
    def go(self, value: str) -> None:
        self.signals.append(value)

    @workflow.update
    async def bump(self, by: int) -> int:
        self.bumps += by
        return self.bumps

    @workflow.run
    async def run(self, scenario: Scenario) -> ScenarioResult:
        wid = workflow.info().workflow_id
        short = timedelta(seconds=20)
        await workflow.execute_activity(step, "first", start_to_close_timeout=short)
        child = await workflow.execute_child_workflow(
            ChildWorkflow.run, "c", id=f"{wid}-child", task_queue=scenario.child_task_queue
        )
        client = workflow.create_nexus_client(endpoint=scenario.endpoint, service=EchoService)
        charge = Charge(order_id=wid, amount=100.0)
        quote = await client.execute_operation(
            EchoService.quote, charge, schedule_to_close_timeout=short
        )
        charged = await client.execute_operation(
            EchoService.charge, charge, schedule_to_close_timeout=short
        )
        guarded_error: str | None = None
        if scenario.guarded:
            try:
                await client.execute_operation(
                    EchoService.guarded, charge, schedule_to_close_timeout=short
                )
            except NexusOperationError as err:
                guarded_error = interceptors.error_kind(err)
        if scenario.slow_seconds:
            await workflow.sleep(scenario.slow_seconds)
        if scenario.wait_for_signal:
            await workflow.wait_condition(lambda: bool(self.signals) and self.bumps > 0)
        return ScenarioResult(
            quote=quote,
            charged=charged,
            child=child,
            guarded_error=guarded_error,
            bumps=self.bumps,
            signals=self.signals,
        )


@workflow.defn
class CancelCallerWorkflow:
    @workflow.run
    async def run(self, endpoint: str) -> str:
        client = workflow.create_nexus_client(endpoint=endpoint, service=EchoService)
        handle = await client.start_operation(
            EchoService.hold,
            Charge(order_id=workflow.info().workflow_id, amount=1.0),
            schedule_to_close_timeout=timedelta(seconds=30),
        )
        handle.cancel()
        try:
            await handle
        except NexusOperationError as err:
            return interceptors.error_kind(err)
        return "not canceled"


@workflow.defn
class FailingWorkflow:
    @workflow.run
    async def run(self) -> None:
        await asyncio.sleep(0)
        raise ApplicationError("boom", type="Boom", non_retryable=True)
