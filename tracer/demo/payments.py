"""The ``payments`` namespace: a Nexus service with a sync and an async operation."""

from __future__ import annotations

from datetime import timedelta

import nexusrpc
import nexusrpc.handler
from temporalio import activity, nexus, workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ApplicationError

import interceptors

from .model import ORDERS_NAMESPACE, Payment, PaymentResult, Quote

__all__ = [
    "PaymentsService",
    "PaymentsServiceHandler",
    "ProcessPaymentWorkflow",
    "charge_card",
    "record_transaction",
    "validate_payment",
]

FEE_RATE = 0.029
DECLINED_CARD = "0000-0000"
SLOW_BANK = "slow-bank"


@nexusrpc.service
class PaymentsService:
    """The contract the payments team publishes to other namespaces."""

    get_quote: nexusrpc.Operation[Payment, Quote]
    process_payment: nexusrpc.Operation[Payment, PaymentResult]


@activity.defn
async def validate_payment(payment: Payment) -> None:
    """Reject payments that can never succeed."""
    if payment.amount <= 0:
        raise ApplicationError("amount must be positive", type="InvalidPayment", non_retryable=True)


@activity.defn
async def charge_card(payment: Payment) -> str:
    """Charge the card; the sample's declined card fails without retry."""
    if payment.card == DECLINED_CARD:
        raise ApplicationError(
            f"card {payment.card} was declined", type="CardDeclined", non_retryable=True
        )
    return f"pay-{payment.order_id}"


@activity.defn
async def record_transaction(payment_id: str) -> None:
    """Write the charge to the ledger."""
    activity.logger.info("recorded %s", payment_id)


@workflow.defn
class ProcessPaymentWorkflow:
    """Validate, charge and record a payment."""

    @workflow.run
    async def run(self, payment: Payment) -> PaymentResult:
        timeout, retry = timedelta(seconds=10), RetryPolicy(maximum_attempts=3)
        await workflow.execute_activity(
            validate_payment, payment, start_to_close_timeout=timeout, retry_policy=retry
        )
        if payment.bank == SLOW_BANK:
            # The slow bank takes longer than the caller is willing to wait.
            await workflow.sleep(timedelta(seconds=20))
        payment_id = await workflow.execute_activity(
            charge_card, payment, start_to_close_timeout=timeout, retry_policy=retry
        )
        await workflow.execute_activity(
            record_transaction, payment_id, start_to_close_timeout=timeout, retry_policy=retry
        )
        return PaymentResult(payment_id=payment_id, status="charged")


@nexusrpc.handler.service_handler(service=PaymentsService)
class PaymentsServiceHandler:
    """Handlers of :class:`PaymentsService`, run by the payments worker."""

    @nexusrpc.handler.sync_operation
    async def get_quote(
        self, ctx: nexusrpc.handler.StartOperationContext, payment: Payment
    ) -> Quote:
        """Answer at once: no workflow is started (a sync operation)."""
        interceptors.require_caller_namespace(ORDERS_NAMESPACE)  # the allowed caller namespaces
        return Quote(
            order_id=payment.order_id,
            amount=payment.amount,
            fee=round(payment.amount * FEE_RATE, 2),
        )

    @nexus.workflow_run_operation
    async def process_payment(
        self, ctx: nexus.WorkflowRunOperationContext, payment: Payment
    ) -> nexus.WorkflowHandle[PaymentResult]:
        """Start ``ProcessPaymentWorkflow`` (an async operation)."""
        interceptors.require_caller_namespace(ORDERS_NAMESPACE)
        return await ctx.start_workflow(
            ProcessPaymentWorkflow.run, payment, id=f"payment-{payment.order_id}"
        )
