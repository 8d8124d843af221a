"""Run the sample's workers and inventory API, and place the scenario's orders."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from temporalio.client import Client, Interceptor, WorkflowFailureError, WorkflowHandle
from temporalio.worker import Worker

from interceptors import TracingInterceptor

from . import inventory, notifications, orders, payments
from .model import (
    INVENTORY_NAMESPACE,
    INVENTORY_TASK_QUEUE,
    NOTIFICATIONS_NAMESPACE,
    NOTIFICATIONS_TASK_QUEUE,
    ORDERS_NAMESPACE,
    ORDERS_TASK_QUEUE,
    PAYMENTS_NAMESPACE,
    PAYMENTS_TASK_QUEUE,
    Order,
    Payment,
)

__all__ = ["OrderOutcome", "SampleFleet", "run_orders", "run_sample_fleet", "sample_orders"]

logger = logging.getLogger(__name__)


@dataclass
class SampleFleet:
    """The running sample: one client per namespace and the inventory API's URL."""

    clients: dict[str, Client]
    inventory_url: str
    workers: list[Worker] = field(default_factory=list)


@dataclass(frozen=True)
class OrderOutcome:
    """How one order of the scenario ended."""

    order_id: str
    status: str
    detail: str


def sample_orders(tag: str) -> list[Order]:
    """The scenario: two good orders (stock waited for, stock polled), a declined card,
    and a payment that takes longer than the order is willing to wait."""
    return [
        Order(id=f"order-{tag}-ok", customer="ada", stock_mode="wait"),
        Order(id=f"order-{tag}-poll", customer="grace", items=["pen", "ink"], stock_mode="poll"),
        Order(
            id=f"order-{tag}-declined",
            customer="alan",
            payment=Payment(order_id=f"order-{tag}-declined", amount=25.0, card="0000-0000"),
        ),
        Order(
            id=f"order-{tag}-slow",
            customer="edsger",
            payment=Payment(order_id=f"order-{tag}-slow", amount=40.0, bank="slow-bank"),
            payment_timeout_seconds=3,
        ),
    ]


async def _serve_http(server: uvicorn.Server) -> None:
    await server.serve()


@contextlib.asynccontextmanager
async def run_sample_fleet(
    address: str,
    *,
    inventory_port: int,
    interceptors: Sequence[Interceptor] | None = None,
    host: str = "127.0.0.1",
) -> AsyncIterator[SampleFleet]:
    """Run a worker per namespace and the inventory API until the context exits.

    ``interceptors`` go on every client (hence every worker); by default one
    :class:`interceptors.TracingInterceptor` on the global tracer provider. Pass ``()``
    for none.
    """
    if interceptors is None:
        interceptors = [TracingInterceptor()]
    namespaces = (
        ORDERS_NAMESPACE,
        PAYMENTS_NAMESPACE,
        NOTIFICATIONS_NAMESPACE,
        INVENTORY_NAMESPACE,
    )
    clients = {
        namespace: await Client.connect(address, namespace=namespace, interceptors=interceptors)
        for namespace in namespaces
    }
    inventory_url = f"http://{host}:{inventory_port}"
    fleet = SampleFleet(clients=clients, inventory_url=inventory_url)
    fleet.workers = [
        Worker(
            clients[ORDERS_NAMESPACE],
            task_queue=ORDERS_TASK_QUEUE,
            workflows=[orders.OrderWorkflow],
            activities=[
                orders.validate_order,
                orders.OrderActivities(inventory_url).reserve_stock,
                orders.OrderActivities(inventory_url).reserve_stock_and_poll,
            ],
        ),
        Worker(
            clients[PAYMENTS_NAMESPACE],
            task_queue=PAYMENTS_TASK_QUEUE,
            workflows=[payments.ProcessPaymentWorkflow],
            activities=[
                payments.validate_payment,
                payments.charge_card,
                payments.record_transaction,
            ],
            nexus_service_handlers=[payments.PaymentsServiceHandler()],
        ),
        Worker(
            clients[NOTIFICATIONS_NAMESPACE],
            task_queue=NOTIFICATIONS_TASK_QUEUE,
            workflows=[notifications.SendConfirmationWorkflow],
            activities=[notifications.send_email],
            nexus_service_handlers=[notifications.NotificationsServiceHandler()],
        ),
        Worker(
            clients[INVENTORY_NAMESPACE],
            task_queue=INVENTORY_TASK_QUEUE,
            workflows=[inventory.ReserveStockWorkflow],
            activities=[inventory.reserve_items],
        ),
    ]
    api = uvicorn.Server(
        uvicorn.Config(
            inventory.create_inventory_api(clients[INVENTORY_NAMESPACE]),
            host=host,
            port=inventory_port,
            log_level="warning",
            lifespan="off",
        )
    )
    api_task = asyncio.create_task(_serve_http(api))
    worker_tasks = [asyncio.create_task(worker.run()) for worker in fleet.workers]
    try:
        while not api.started:
            if api_task.done():
                api_task.result()
                raise RuntimeError(f"inventory API did not start on port {inventory_port}")
            await asyncio.sleep(0.05)
        yield fleet
    finally:
        api.should_exit = True
        await asyncio.gather(
            *(worker.shutdown() for worker in fleet.workers), return_exceptions=True
        )
        await asyncio.gather(api_task, *worker_tasks, return_exceptions=True)


async def run_orders(client: Client, orders_to_place: Sequence[Order]) -> list[OrderOutcome]:
    """Start every order at once in ``orders`` and wait for each to close."""
    handles = [
        await client.start_workflow(
            orders.OrderWorkflow.run, order, id=order.id, task_queue=ORDERS_TASK_QUEUE
        )
        for order in orders_to_place
    ]

    async def outcome(handle: WorkflowHandle[Any, Any]) -> OrderOutcome:
        try:
            await handle.result()
        except WorkflowFailureError as err:
            return OrderOutcome(handle.id, "failed", str(err.cause))
        return OrderOutcome(handle.id, "completed", "")

    return list(await asyncio.gather(*(outcome(handle) for handle in handles)))
