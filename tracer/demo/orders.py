"""The ``orders`` namespace: ``OrderWorkflow`` calls three other namespaces."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from temporalio import activity, workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ApplicationError, NexusOperationError, TimeoutError

with workflow.unsafe.imports_passed_through():
    import httpx

    import interceptors.http

    from .notifications import NotificationsService
    from .payments import PaymentsService

from .model import (
    NOTIFICATIONS_ENDPOINT,
    PAYMENTS_ENDPOINT,
    Confirmation,
    Order,
    OrderResult,
    Payment,
    StockRequest,
)

__all__ = ["OrderActivities", "OrderWorkflow", "validate_order"]

POLL_INTERVAL_SECONDS = 0.2


@activity.defn
async def validate_order(order: Order) -> None:
    """Reject orders that cannot be fulfilled."""
    if not order.items:
        raise ApplicationError("an order needs items", type="InvalidOrder", non_retryable=True)


class OrderActivities:
    """Activities that reach the inventory team's HTTP API (the activity wrapper)."""

    def __init__(self, inventory_url: str) -> None:
        self._inventory_url = inventory_url.rstrip("/")

    def _http(self) -> httpx.AsyncClient:
        # Every request carries traceparent and the signed caller claim of this activity.
        return httpx.AsyncClient(
            base_url=self._inventory_url,
            timeout=30,
            event_hooks=interceptors.http.async_httpx_hooks(),
        )

    @activity.defn
    async def reserve_stock(self, request: StockRequest) -> str:
        """Ask the inventory API to reserve stock and wait for its answer."""
        async with self._http() as http:
            posting = asyncio.create_task(
                http.post(
                    "/reservations", json={"order_id": request.order_id, "items": request.items}
                )
            )
            # The API answers when the reservation is done: heartbeat meanwhile, so a slow
            # reservation is not mistaken for a dead worker.
            while not posting.done():
                activity.heartbeat()
                await asyncio.wait({posting}, timeout=POLL_INTERVAL_SECONDS)
            response = posting.result()
            response.raise_for_status()
            return str(response.json()["reservation_id"])

    @activity.defn
    async def reserve_stock_and_poll(self, request: StockRequest) -> str:
        """Ask the inventory API to start a reservation, then poll until it is done."""
        async with self._http() as http:
            body = {"order_id": request.order_id, "items": request.items, "wait": False}
            started = await http.post("/reservations", json=body)
            started.raise_for_status()
            workflow_id = started.json()["workflow_id"]
            while True:
                polled = await http.get(f"/reservations/{workflow_id}")
                polled.raise_for_status()
                if polled.json()["status"] == "completed":
                    return str(polled.json()["reservation_id"])
                activity.heartbeat()
                await asyncio.sleep(POLL_INTERVAL_SECONDS)


@workflow.defn
class OrderWorkflow:
    """Validate, quote, charge, confirm and reserve stock for one order."""

    @workflow.run
    async def run(self, order: Order) -> OrderResult:
        short = timedelta(seconds=30)
        await workflow.execute_activity(validate_order, order, start_to_close_timeout=short)
        payment = order.payment or Payment(order_id=order.id, amount=10.0)

        payments = workflow.create_nexus_client(endpoint=PAYMENTS_ENDPOINT, service=PaymentsService)
        # Sync operation: the handler answers inline, no workflow runs in payments.
        await payments.execute_operation(
            PaymentsService.get_quote, payment, schedule_to_close_timeout=short
        )
        # Async operation: starts ProcessPaymentWorkflow in payments and waits for it.
        try:
            result = await payments.execute_operation(
                PaymentsService.process_payment,
                payment,
                schedule_to_close_timeout=timedelta(seconds=order.payment_timeout_seconds),
            )
        except NexusOperationError as err:
            if isinstance(err.cause, TimeoutError):
                raise ApplicationError(
                    f"payment for {order.id} timed out", type="PaymentTimedOut", non_retryable=True
                ) from err
            raise ApplicationError(
                f"payment for {order.id} failed", type="PaymentFailed", non_retryable=True
            ) from err

        # Fire and forget: start the confirmation and never wait for it.
        notifications = workflow.create_nexus_client(
            endpoint=NOTIFICATIONS_ENDPOINT, service=NotificationsService
        )
        await notifications.start_operation(
            NotificationsService.send_confirmation,
            Confirmation(order_id=order.id, customer=order.customer, payment_id=result.payment_id),
            schedule_to_close_timeout=timedelta(minutes=5),
            cancellation_type=workflow.NexusOperationCancellationType.ABANDON,
        )

        stock = StockRequest(order_id=order.id, items=order.items)
        reserve = (
            OrderActivities.reserve_stock_and_poll
            if order.stock_mode == "poll"
            else OrderActivities.reserve_stock
        )
        reservation_id = await workflow.execute_activity_method(
            reserve,
            stock,
            start_to_close_timeout=timedelta(seconds=60),
            heartbeat_timeout=timedelta(seconds=10),
            retry_policy=RetryPolicy(maximum_attempts=3),
        )
        return OrderResult(
            order_id=order.id, payment_id=result.payment_id, reservation_id=reservation_id
        )
