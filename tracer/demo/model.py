"""Names and payload types shared by the sample's namespaces."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..devserver import NexusEndpoint

__all__ = [
    "ENDPOINTS",
    "INVENTORY_NAMESPACE",
    "INVENTORY_TASK_QUEUE",
    "NAMESPACES",
    "NOTIFICATIONS_ENDPOINT",
    "NOTIFICATIONS_NAMESPACE",
    "NOTIFICATIONS_TASK_QUEUE",
    "ORDERS_NAMESPACE",
    "ORDERS_TASK_QUEUE",
    "PAYMENTS_ENDPOINT",
    "PAYMENTS_NAMESPACE",
    "PAYMENTS_TASK_QUEUE",
    "Confirmation",
    "Order",
    "OrderResult",
    "Payment",
    "PaymentResult",
    "Quote",
    "Reservation",
    "StockRequest",
]

ORDERS_NAMESPACE = "orders"
PAYMENTS_NAMESPACE = "payments"
NOTIFICATIONS_NAMESPACE = "notifications"
INVENTORY_NAMESPACE = "inventory"
NAMESPACES = (ORDERS_NAMESPACE, PAYMENTS_NAMESPACE, NOTIFICATIONS_NAMESPACE, INVENTORY_NAMESPACE)

ORDERS_TASK_QUEUE = "orders-tq"
PAYMENTS_TASK_QUEUE = "payments-tq"
NOTIFICATIONS_TASK_QUEUE = "notifications-tq"
INVENTORY_TASK_QUEUE = "inventory-tq"

PAYMENTS_ENDPOINT = "payments-endpoint"
NOTIFICATIONS_ENDPOINT = "notifications-endpoint"
ENDPOINTS = (
    NexusEndpoint(PAYMENTS_ENDPOINT, PAYMENTS_NAMESPACE, PAYMENTS_TASK_QUEUE),
    NexusEndpoint(NOTIFICATIONS_ENDPOINT, NOTIFICATIONS_NAMESPACE, NOTIFICATIONS_TASK_QUEUE),
)


@dataclass
class Payment:
    """What the orders team asks the payments team to charge."""

    order_id: str
    amount: float
    card: str = "4242-4242"
    # The sample's payment gateway answers slowly for this bank, to show a timed-out call.
    bank: str = "fast-bank"


@dataclass
class Order:
    """An order placed in the ``orders`` namespace."""

    id: str
    customer: str
    items: list[str] = field(default_factory=lambda: ["book"])
    payment: Payment | None = None
    # "wait": the stock API answers once the reservation is done; "poll": it answers at
    # once and the activity polls for the outcome.
    stock_mode: str = "wait"
    payment_timeout_seconds: float = 30.0


@dataclass
class Quote:
    """A fee quote (sync Nexus operation)."""

    order_id: str
    amount: float
    fee: float


@dataclass
class PaymentResult:
    """Outcome of ``ProcessPaymentWorkflow``."""

    payment_id: str
    status: str


@dataclass
class Confirmation:
    """Input of the fire-and-forget notification."""

    order_id: str
    customer: str
    payment_id: str


@dataclass
class StockRequest:
    """Body of the inventory API's reservation request."""

    order_id: str
    items: list[str]


@dataclass
class Reservation:
    """Outcome of ``ReserveStockWorkflow``."""

    reservation_id: str
    items: list[str]


@dataclass
class OrderResult:
    """Outcome of ``OrderWorkflow``."""

    order_id: str
    payment_id: str
    reservation_id: str
