"""The ``inventory`` namespace, reached the older way: an HTTP API that starts a workflow.

This is the "activity wrapper" pattern: an activity in ``orders`` calls this API, which
starts ``ReserveStockWorkflow`` in ``inventory`` with its own Temporal client, and either
waits for the result or answers at once and lets the caller poll.
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import timedelta
from typing import Any

from fastapi import FastAPI, HTTPException
from pydantic import BaseModel
from temporalio import activity, workflow
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowFailureError
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.service import RPCError, RPCStatusCode

from interceptors.http import CallerContextMiddleware

from .model import INVENTORY_TASK_QUEUE, Reservation, StockRequest

__all__ = ["ReserveStockWorkflow", "create_inventory_api", "reserve_items"]


@activity.defn
async def reserve_items(request: StockRequest) -> str:
    """Hold the items in the warehouse."""
    return f"res-{request.order_id}"


@workflow.defn
class ReserveStockWorkflow:
    """Reserve the items of an order."""

    @workflow.run
    async def run(self, request: StockRequest) -> Reservation:
        reservation_id = await workflow.execute_activity(
            reserve_items, request, start_to_close_timeout=timedelta(seconds=10)
        )
        return Reservation(reservation_id=reservation_id, items=request.items)


class ReservationBody(BaseModel):
    """JSON body of ``POST /reservations``."""

    order_id: str
    items: list[str]
    wait: bool = True


def create_inventory_api(client: Client) -> FastAPI:
    """The inventory team's HTTP API, starting workflows through ``client``."""
    app = FastAPI(title="inventory API (temporal-tracer sample)")
    # Reads the caller claim and traceparent, so the workflows started below record their
    # caller (through a client with interceptors.TracingInterceptor).
    app.add_middleware(CallerContextMiddleware)

    @app.post("/reservations")
    async def reserve(body: ReservationBody) -> dict[str, Any]:
        request = StockRequest(order_id=body.order_id, items=body.items)
        handle = await client.start_workflow(
            ReserveStockWorkflow.run,
            request,
            id=f"stock-{body.order_id}",
            task_queue=INVENTORY_TASK_QUEUE,
            # A retried request (the caller's activity timed out and tried again) joins
            # the reservation it already started instead of failing.
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        )
        if not body.wait:
            return {"workflow_id": handle.id, "status": "started"}
        try:
            reservation = await handle.result()
        except WorkflowFailureError as err:
            raise HTTPException(status_code=409, detail=str(err.cause)) from err
        return {"workflow_id": handle.id, "status": "completed", **asdict(reservation)}

    @app.get("/reservations/{workflow_id}")
    async def status(workflow_id: str) -> dict[str, Any]:
        handle = client.get_workflow_handle_for(ReserveStockWorkflow.run, workflow_id)
        try:
            description = await handle.describe()
        except RPCError as err:
            if err.status == RPCStatusCode.NOT_FOUND:
                raise HTTPException(status_code=404, detail="no such reservation") from err
            raise
        if description.status == WorkflowExecutionStatus.RUNNING:
            return {"workflow_id": workflow_id, "status": "running"}
        if description.status != WorkflowExecutionStatus.COMPLETED:
            raise HTTPException(status_code=409, detail=f"reservation {description.status}")
        reservation = await handle.result()
        return {"workflow_id": workflow_id, "status": "completed", **asdict(reservation)}

    return app
