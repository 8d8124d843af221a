"""Workflows for bench/link_cost.py: a caller with one async Nexus call, and its handler
(a module of its own: the workflow sandbox re-imports it)."""

from __future__ import annotations

import nexusrpc
import nexusrpc.handler
from temporalio import nexus, workflow


@workflow.defn
class EchoWorkflow:
    """The handler workflow the async operation starts."""

    @workflow.run
    async def run(self, name: str) -> str:
        return name


@nexusrpc.service
class EchoService:
    echo: nexusrpc.Operation[str, str]


@nexusrpc.handler.service_handler(service=EchoService)
class EchoServiceHandler:
    @nexus.workflow_run_operation
    async def echo(
        self, ctx: nexus.WorkflowRunOperationContext, name: str
    ) -> nexus.WorkflowHandle[str]:
        return await ctx.start_workflow(EchoWorkflow.run, name, id=f"echo-{name}")


@workflow.defn
class CallerWorkflow:
    """Makes one async Nexus call and returns its answer."""

    @workflow.run
    async def run(self, endpoint: str, name: str) -> str:
        client = workflow.create_nexus_client(endpoint=endpoint, service=EchoService)
        return await client.execute_operation(EchoService.echo, name)
