"""A Nexus service called by a client, without a workflow (standalone operations), in the
shape of Temporal's ``nexus_standalone_operations`` sample (written here, not copied).

Used by ``test_standalone_operations.py``; kept apart because the workflow sandbox
re-imports it.
"""

from __future__ import annotations

import nexusrpc
import nexusrpc.handler
from temporalio import nexus, workflow

DECLINED = "card declined by issuer"


@workflow.defn
class RefundWorkflow:
    """The async operation's handler workflow."""

    @workflow.run
    async def run(self, order: str) -> str:
        return f"refunded {order}"


@nexusrpc.service
class RefundService:
    """``refund`` starts a workflow; ``quote`` answers inline and declines ``bad-`` orders."""

    refund: nexusrpc.Operation[str, str]
    quote: nexusrpc.Operation[str, str]


@nexusrpc.handler.service_handler(service=RefundService)
class RefundServiceHandler:
    """Handlers of :class:`RefundService`."""

    @nexus.workflow_run_operation
    async def refund(
        self, ctx: nexus.WorkflowRunOperationContext, order: str
    ) -> nexus.WorkflowHandle[str]:
        return await ctx.start_workflow(RefundWorkflow.run, order, id=f"refund-{order}")

    @nexusrpc.handler.sync_operation
    async def quote(self, ctx: nexusrpc.handler.StartOperationContext, order: str) -> str:
        if order.startswith("bad-"):
            raise nexusrpc.HandlerError(DECLINED, type=nexusrpc.HandlerErrorType.BAD_REQUEST)
        return f"quote for {order}: 12.50"
