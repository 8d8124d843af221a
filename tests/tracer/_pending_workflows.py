"""Calls that hang while their caller waits: a sync handler that keeps failing, an async
handler workflow stuck on a failing activity, and a call into a task queue nobody polls.

Used by ``test_pending.py``; kept apart because the workflow sandbox re-imports it.
"""

from __future__ import annotations

from datetime import timedelta

import nexusrpc
import nexusrpc.handler
from temporalio import activity, nexus, workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ApplicationError

LEDGER_DOWN = "ledger database unreachable: connection refused by ledger-db:5432"
PROCESSOR_DOWN = "card processor unavailable (HTTP 503)"


@activity.defn
async def charge_card(order: str) -> str:
    """Fails every time, as a processor that is down does: the activity retries."""
    raise ApplicationError(PROCESSOR_DOWN, type="ProcessorUnavailable")


@workflow.defn
class ChargeWorkflow:
    """The async operation's handler: stuck retrying its activity."""

    @workflow.run
    async def run(self, order: str) -> str:
        return await workflow.execute_activity(
            charge_card,
            order,
            start_to_close_timeout=timedelta(seconds=5),
            retry_policy=RetryPolicy(initial_interval=timedelta(seconds=1), backoff_coefficient=1),
        )


@nexusrpc.service
class LedgerService:
    """``post`` answers inline and keeps failing; ``charge`` starts a workflow."""

    post: nexusrpc.Operation[str, str]
    charge: nexusrpc.Operation[str, str]


@nexusrpc.handler.service_handler(service=LedgerService)
class LedgerServiceHandler:
    """Handlers of :class:`LedgerService`."""

    @nexusrpc.handler.sync_operation
    async def post(self, ctx: nexusrpc.handler.StartOperationContext, order: str) -> str:
        raise RuntimeError(LEDGER_DOWN)

    @nexus.workflow_run_operation
    async def charge(
        self, ctx: nexus.WorkflowRunOperationContext, order: str
    ) -> nexus.WorkflowHandle[str]:
        return await ctx.start_workflow(ChargeWorkflow.run, order, id=f"charge-{order}")


@workflow.defn
class SettleWorkflow:
    """Calls one operation of the ledger through ``endpoint`` and waits for it."""

    @workflow.run
    async def run(self, endpoint: str, operation: str) -> str:
        client = workflow.create_nexus_client(endpoint=endpoint, service=LedgerService)
        op = LedgerService.post if operation == "post" else LedgerService.charge
        return await client.execute_operation(
            op, workflow.info().workflow_id, schedule_to_close_timeout=timedelta(minutes=5)
        )
