"""The ``notifications`` namespace: a Nexus operation callers fire and forget."""

from __future__ import annotations

from datetime import timedelta

import nexusrpc
import nexusrpc.handler
from temporalio import activity, nexus, workflow

from .model import Confirmation

__all__ = [
    "NotificationsService",
    "NotificationsServiceHandler",
    "SendConfirmationWorkflow",
    "send_email",
]


@nexusrpc.service
class NotificationsService:
    """The contract the notifications team publishes."""

    send_confirmation: nexusrpc.Operation[Confirmation, None]


@activity.defn
async def send_email(confirmation: Confirmation) -> None:
    """Pretend to send the confirmation e-mail."""
    activity.logger.info("e-mail to %s for %s", confirmation.customer, confirmation.order_id)


@workflow.defn
class SendConfirmationWorkflow:
    """Send the order confirmation."""

    @workflow.run
    async def run(self, confirmation: Confirmation) -> None:
        await workflow.execute_activity(
            send_email, confirmation, start_to_close_timeout=timedelta(seconds=10)
        )


@nexusrpc.handler.service_handler(service=NotificationsService)
class NotificationsServiceHandler:
    """Handlers of :class:`NotificationsService`."""

    @nexus.workflow_run_operation
    async def send_confirmation(
        self, ctx: nexus.WorkflowRunOperationContext, confirmation: Confirmation
    ) -> nexus.WorkflowHandle[None]:
        """Start ``SendConfirmationWorkflow``."""
        return await ctx.start_workflow(
            SendConfirmationWorkflow.run, confirmation, id=f"confirm-{confirmation.order_id}"
        )
