"""A real SQLite store holding cross-namespace trees whose hidden parts carry markers, a
real tokens file, and the web app served by uvicorn over real HTTP.

The trees (``orders`` is the scoped viewer's only namespace):

- ``order-1`` (orders, failed) calls ``payments`` twice over Nexus: a sync ``get_quote``
  (its handler side exists only as a span with no namespace) and an async
  ``process_payment`` whose operation token decodes to ``payment-order-1``, which fails
  with a declined card; it also reserves stock through an activity wrapper that starts
  ``stock-order-1`` in ``inventory``.
- ``order-2`` (orders) calls a namespace the collector does not link (``shadow``).
- ``settle-2`` (payments) calls ``inventory``: both hidden from the scoped viewer.
- ``refund-1`` (payments) alone.
- ``quote-op-1``, a standalone Nexus operation in ``payments`` (no workflow started it),
  declined by its sync handler in ``inventory``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI

from tracer.db import create_db_engine, upgrade_database
from tracer.devserver import free_port
from tracer.domain import NodeKind
from tracer.link import Connections, load_connect_configs
from tracer.store import CallFacts, LinkFacts, RunFacts, Store
from web import WebSettings, create_app

ORDERS_TOKEN = "orders-oncall-token"
ADMIN_TOKEN = "admin-token"
NOW = datetime.now(UTC)
T0 = NOW - timedelta(minutes=10)
PAY_TOKEN = (
    base64.urlsafe_b64encode(
        json.dumps({"t": 1, "ns": "payments", "wid": "payment-order-1"}).encode()
    )
    .decode()
    .rstrip("=")
)
# What only a hidden namespace holds: none of it may reach the orders-only viewer.
HIDDEN_MARKERS = (
    "payment-order-1",
    "run-pay-1",
    "stock-order-1",
    "run-stock-1",
    "card 4242 declined",
    "PAYMENTS-SECRET-NULL-NAMESPACE",
    "PAYMENTS-SECRET-SPAN",
    "payments-tq",
    "refund-1",
    "settle-2",
    # (not the operation's id: requests for its tree name it themselves)
    "quote refused for a secret reason",
    "req-quote-op-1",
    PAY_TOKEN,
)
VISIBLE_MARKER = "ORDERS-VISIBLE-SPAN"


@dataclass
class Site:
    """The served app and what a test needs to reach it."""

    url: str
    store: Store
    app: FastAPI

    def client(self, token: str | None = None) -> httpx.Client:
        """An HTTP client presenting ``token`` as a bearer token (none: anonymous)."""
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=10)


def _ms(milliseconds: int) -> datetime:
    return T0 + timedelta(milliseconds=milliseconds)


def _span(span_id: str, name: str, attributes: dict[str, str], **columns: Any) -> dict[str, Any]:
    return {
        "trace_id": "ab" * 16,
        "span_id": span_id,
        "parent_span_id": None,
        "name": name,
        "kind": 1,
        "service_name": "worker",
        "start_time_unix_nano": int(_ms(100).timestamp() * 1e9),
        "end_time_unix_nano": int(_ms(200).timestamp() * 1e9),
        "status_code": 0,
        "status_message": None,
        "namespace": columns.get("namespace"),
        "workflow_id": columns.get("workflow_id"),
        "run_id": columns.get("run_id"),
        "request_id": columns.get("request_id"),
        "attributes": json.dumps({k: {"stringValue": v} for k, v in attributes.items()}),
        "resource": "{}",
        "events": "[]",
        "links": "[]",
        "received_at": NOW,
    }


def fill(store: Store) -> None:
    """Write the trees and spans described in the module docstring."""
    store.ensure_namespace_states(["orders", "payments", "inventory"])
    for namespace in ("orders", "payments", "inventory"):
        store.set_namespace_status(namespace, "ok")  # as a linker that reached Temporal
    store.save_endpoints(
        [
            ("payments-endpoint", "payments", "payments-tq"),
            ("inventory-endpoint", "inventory", "inventory-tq"),
            ("shadow-endpoint", "shadow", "shadow-tq"),
        ]
    )
    nexus = {"kind": "nexus", "source": "caller_history", "caller_namespace": "orders"}
    store.save_runs(
        [
            RunFacts(
                namespace="orders",
                workflow_id="order-1",
                run_id="run-order-1",
                workflow_type="OrderWorkflow",
                task_queue="orders-tq",
                status="failed",
                start_time=T0,
                close_time=_ms(3000),
                error_type="NexusOperationFailed",
                error_message="payment failed",
                history_length=30,
                calls=[
                    CallFacts(
                        event_id=5,
                        kind="nexus_operation",
                        name="payments-endpoint/PaymentsService/get_quote",
                        start_time=_ms(10),
                        end_time=_ms(50),
                        status="completed",
                        endpoint="payments-endpoint",
                        service="PaymentsService",
                        operation="get_quote",
                        request_id="req-quote",
                    ),
                    CallFacts(
                        event_id=9,
                        kind="nexus_operation",
                        name="payments-endpoint/PaymentsService/process_payment",
                        start_time=_ms(60),
                        end_time=_ms(2000),
                        status="failed",
                        error_type="NexusOperationFailed",
                        error_message="payment failed",
                        endpoint="payments-endpoint",
                        service="PaymentsService",
                        operation="process_payment",
                        request_id="req-pay",
                        operation_token=PAY_TOKEN,
                    ),
                    CallFacts(
                        event_id=13,
                        kind="activity",
                        name="reserve_stock",
                        start_time=_ms(2100),
                        end_time=_ms(2500),
                        status="completed",
                        activity_id="3",
                    ),
                ],
                links=[
                    LinkFacts(
                        **nexus,
                        caller_workflow_id="order-1",
                        caller_run_id="run-order-1",
                        handler_namespace="payments",
                        handler_workflow_id="payment-order-1",
                        handler_run_id="run-pay-1",
                        caller_event_id=9,
                        caller_request_id="req-pay",
                    )
                ],
            ),
            RunFacts(
                namespace="payments",
                workflow_id="payment-order-1",
                run_id="run-pay-1",
                workflow_type="ProcessPaymentWorkflow",
                task_queue="payments-tq",
                status="failed",
                start_time=_ms(100),
                close_time=_ms(1900),
                error_type="CardDeclined",
                error_message="card 4242 declined",
                history_length=12,
                calls=[
                    CallFacts(
                        event_id=5,
                        kind="activity",
                        name="charge_card",
                        start_time=_ms(200),
                        end_time=_ms(1800),
                        status="failed",
                        error_type="CardDeclined",
                        error_message="card 4242 declined",
                        activity_id="1",
                    )
                ],
            ),
            RunFacts(
                namespace="inventory",
                workflow_id="stock-order-1",
                run_id="run-stock-1",
                workflow_type="ReserveStockWorkflow",
                task_queue="inventory-tq",
                status="completed",
                start_time=_ms(2200),
                close_time=_ms(2400),
                history_length=8,
                links=[
                    LinkFacts(
                        kind="activity_wrapper",
                        source="header",
                        caller_namespace="orders",
                        caller_workflow_id="order-1",
                        caller_run_id="run-order-1",
                        handler_namespace="inventory",
                        handler_workflow_id="stock-order-1",
                        handler_run_id="run-stock-1",
                        caller_activity_id="3",
                    )
                ],
            ),
            RunFacts(
                namespace="orders",
                workflow_id="order-2",
                run_id="run-order-2",
                workflow_type="OrderWorkflow",
                status="completed",
                start_time=_ms(4000),
                close_time=_ms(5000),
                calls=[
                    CallFacts(
                        event_id=5,
                        kind="nexus_operation",
                        name="shadow-endpoint/ShadowService/peek",
                        start_time=_ms(4100),
                        end_time=_ms(4200),
                        status="completed",
                        endpoint="shadow-endpoint",
                        service="ShadowService",
                        operation="peek",
                        request_id="req-shadow",
                    )
                ],
            ),
            RunFacts(
                namespace="payments",
                workflow_id="settle-2",
                run_id="run-settle-2",
                workflow_type="SettlementWorkflow",
                status="completed",
                start_time=_ms(6000),
                close_time=_ms(7000),
                calls=[
                    CallFacts(
                        event_id=5,
                        kind="nexus_operation",
                        name="inventory-endpoint/StockService/count",
                        start_time=_ms(6100),
                        end_time=_ms(6200),
                        status="completed",
                        endpoint="inventory-endpoint",
                        service="StockService",
                        operation="count",
                        request_id="req-count",
                    )
                ],
            ),
            RunFacts(
                namespace="payments",
                workflow_id="refund-1",
                run_id="run-refund-1",
                workflow_type="RefundWorkflow",
                status="completed",
                start_time=_ms(8000),
                close_time=_ms(9000),
            ),
            RunFacts(
                namespace="payments",
                workflow_id="quote-op-1",
                run_id="run-quote-op-1",
                workflow_type="inventory-endpoint/StockService/quote",
                status="failed",
                start_time=_ms(9100),
                close_time=_ms(9200),
                error_type="HandlerError.BAD_REQUEST",
                error_message="quote refused for a secret reason",
                kind=NodeKind.NEXUS_OPERATION,
                calls=[
                    CallFacts(
                        event_id=0,
                        kind=NodeKind.NEXUS_OPERATION,
                        name="inventory-endpoint/StockService/quote",
                        start_time=_ms(9100),
                        end_time=_ms(9200),
                        status="failed",
                        error_type="HandlerError.BAD_REQUEST",
                        error_message="quote refused for a secret reason",
                        endpoint="inventory-endpoint",
                        service="StockService",
                        operation="quote",
                        request_id="req-quote-op-1",
                    )
                ],
            ),
        ]
    )
    store.save_spans(
        [
            # The attack's span: no temporal.namespace, but the sync call's request id.
            _span(
                "00000000000000a1",
                "RunStartNexusOperationHandler:PaymentsService/get_quote",
                {
                    "temporal.nexus.request_id": "req-quote",
                    "ledger": "PAYMENTS-SECRET-NULL-NAMESPACE",
                },
                request_id="req-quote",
            ),
            _span(
                "00000000000000a2",
                "RunWorkflow:ProcessPaymentWorkflow",
                {"ledger": "PAYMENTS-SECRET-SPAN"},
                namespace="payments",
                workflow_id="payment-order-1",
                run_id="run-pay-1",
            ),
            _span(
                "00000000000000a3",
                "RunWorkflow:OrderWorkflow",
                {"note": VISIBLE_MARKER},
                namespace="orders",
                workflow_id="order-1",
                run_id="run-order-1",
            ),
        ]
    )


@contextmanager
def serve(app: Any, host: str = "127.0.0.1", **config: Any) -> Iterator[str]:
    """Run ``app`` with uvicorn (``config``: more of its options) in a thread on a free
    port; yield its base URL."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="off", **config)
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "server did not start"
        time.sleep(0.01)
    try:
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def write_tokens(path: Path) -> Path:
    """A tokens file: an ``orders``-only token (by digest) and an admin token."""
    digest = hashlib.sha256(ORDERS_TOKEN.encode()).hexdigest()
    path.write_text(
        f'[tokens.orders-oncall]\nnamespaces = ["orders"]\ntoken_sha256 = "{digest}"\n\n'
        f'[tokens.admin]\nnamespaces = ["*"]\ntoken = "{ADMIN_TOKEN}"\n'
    )
    return path


@pytest.fixture(scope="module")
def filled_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    """A migrated SQLite file holding the trees of the module docstring."""
    engine = create_db_engine(f"sqlite:///{tmp_path_factory.mktemp('security') / 'tracer.db'}")
    upgrade_database(engine)
    store = Store(engine)
    fill(store)
    try:
        yield store
    finally:
        engine.dispose()


@pytest.fixture(scope="module")
def site(filled_store: Store, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """The web app with a real tokens file, served by uvicorn."""
    tokens = write_tokens(tmp_path_factory.mktemp("tokens") / "tokens.toml")
    # Connections that are never dialed here: the diagnosis checks names before it asks.
    connections = Connections(
        load_connect_configs(["orders", "payments", "inventory"], address="127.0.0.1:9")
    )
    app = create_app(filled_store, WebSettings(tokens_file=tokens, connections=connections))
    with serve(app) as url:
        yield Site(url, filled_store, app)


@pytest.fixture(scope="module")
def open_site(filled_store: Store) -> Iterator[Site]:
    """The same store with no tokens file: an open UI."""
    app = create_app(filled_store)
    with serve(app) as url:
        yield Site(url, filled_store, app)
