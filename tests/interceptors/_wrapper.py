"""An activity-wrapper pair for the tests: an activity in ``orders`` calls an HTTP API that
starts a workflow in ``inventory`` (wait for the result, or start then poll)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from temporalio import activity, workflow

with workflow.unsafe.imports_passed_through():
    import httpx

    import interceptors
    import interceptors.http


@dataclass
class WrapperCall:
    order_id: str
    mode: str  # "wait" | "poll" | "forged" | "expired" | "unsigned"


@activity.defn
async def reserve_items(order_id: str) -> str:
    return f"res-{order_id}"


@workflow.defn
class ReserveWorkflow:
    @workflow.run
    async def run(self, order_id: str) -> dict[str, Any]:
        caller = interceptors.caller_info()
        reservation = await workflow.execute_activity(
            reserve_items, order_id, start_to_close_timeout=timedelta(seconds=10)
        )
        return {
            "reservation_id": reservation,
            "caller_namespace": caller.namespace if caller else None,
            "caller_verified": caller.verified if caller else None,
            "caller_reason": caller.reason if caller else None,
        }


class WrapperActivities:
    def __init__(self, url: str, key: str) -> None:
        self.url = url
        self.key = key

    @activity.defn
    async def call_api(self, call: WrapperCall) -> dict[str, Any]:
        if call.mode in ("wait", "poll"):
            hooks = interceptors.http.async_httpx_hooks(key=self.key)
            async with httpx.AsyncClient(base_url=self.url, event_hooks=hooks) as http:
                return await self._call(http, call)
        if call.mode == "forged":
            headers = interceptors.http.outgoing_headers(key="not-the-deployment-key")
        elif call.mode == "expired":
            headers = interceptors.http.outgoing_headers(key=self.key, ttl_seconds=-30)
        else:
            headers = interceptors.http.outgoing_headers(key=b"")  # empty key: unsigned
        async with httpx.AsyncClient(base_url=self.url, headers=headers) as http:
            return await self._call(http, call)

    async def _call(self, http: httpx.AsyncClient, call: WrapperCall) -> dict[str, Any]:
        wait = call.mode != "poll"
        started = await http.post("/reservations", json={"order_id": call.order_id, "wait": wait})
        started.raise_for_status()
        if wait:
            return dict(started.json())
        workflow_id = started.json()["workflow_id"]
        while True:
            polled = await http.get(f"/reservations/{workflow_id}")
            polled.raise_for_status()
            if polled.json()["status"] == "completed":
                return dict(polled.json())
            await asyncio.sleep(0.1)


@workflow.defn
class WrapperCallerWorkflow:
    @workflow.run
    async def run(self, call: WrapperCall) -> dict[str, Any]:
        return await workflow.execute_activity(
            WrapperActivities.call_api, call, start_to_close_timeout=timedelta(seconds=30)
        )
