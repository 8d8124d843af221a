"""What a running call is doing now: the pending state Temporal keeps outside history.

A history says a Nexus operation was scheduled, and nothing more until it ends; only
``DescribeWorkflowExecution`` tells that it is backing off at attempt 4 because its handler
keeps failing, or that it waits on a task queue nobody polls. This module turns that answer
into the call-tree contract's ``pending`` objects, keyed the way the tree finds its calls:
``nexus:<scheduled event id>`` and ``activity:<activity id>``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp
from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.enums.v1 import PendingActivityState, PendingNexusOperationState
from temporalio.api.failure.v1 import Failure
from temporalio.api.workflowservice.v1 import (
    DescribeWorkflowExecutionRequest,
    DescribeWorkflowExecutionResponse,
)
from temporalio.service import RPCError, RPCStatusCode

from tracer.store import OpenRun, Store

from ._connections import Connections
from ._history import failure_type

__all__ = [
    "MAX_DESCRIBES_PER_TREE",
    "PENDING_MAX_AGE",
    "PendingReader",
    "pending_calls",
    "refresh_tree_pending",
]

logger = logging.getLogger(__name__)

# A cause chain longer than this is cut: the first links say what went wrong.
MAX_CAUSE_DEPTH = 8
DESCRIBE_TIMEOUT = timedelta(seconds=5)


def _failure_json(failure: Failure, depth: int = 0) -> dict[str, Any]:
    cause = None
    if failure.HasField("cause") and depth + 1 < MAX_CAUSE_DEPTH:
        cause = _failure_json(failure.cause, depth + 1)
    return {"type": failure_type(failure), "message": failure.message, "cause": cause}


def _time(stamp: Timestamp, present: bool) -> str | None:
    if not present:
        return None
    return stamp.ToDatetime(tzinfo=UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _state(name: str, prefix: str) -> str:
    return name.removeprefix(prefix).lower()


def pending_calls(response: DescribeWorkflowExecutionResponse) -> dict[str, dict[str, Any]]:
    """The contract's ``pending`` object of every pending Nexus operation and activity in a
    describe answer, keyed ``nexus:<scheduled event id>`` or ``activity:<activity id>``."""
    found: dict[str, dict[str, Any]] = {}
    for op in response.pending_nexus_operations:
        found[f"nexus:{op.scheduled_event_id}"] = {
            "state": _state(
                PendingNexusOperationState.Name(op.state), "PENDING_NEXUS_OPERATION_STATE_"
            ),
            "attempt": op.attempt,
            "last_failure": (
                _failure_json(op.last_attempt_failure)
                if op.HasField("last_attempt_failure")
                else None
            ),
            "next_attempt_time": _time(
                op.next_attempt_schedule_time, op.HasField("next_attempt_schedule_time")
            ),
            "blocked_reason": op.blocked_reason or None,
        }
    for activity in response.pending_activities:
        found[f"activity:{activity.activity_id}"] = {
            "state": _state(PendingActivityState.Name(activity.state), "PENDING_ACTIVITY_STATE_"),
            "attempt": activity.attempt,
            "last_failure": (
                _failure_json(activity.last_failure) if activity.HasField("last_failure") else None
            ),
            "next_attempt_time": _time(
                activity.next_attempt_schedule_time,
                activity.HasField("next_attempt_schedule_time"),
            ),
            "blocked_reason": "paused" if activity.paused else None,
            "last_heartbeat_time": _time(
                activity.last_heartbeat_time, activity.HasField("last_heartbeat_time")
            ),
        }
    return found


@dataclass
class PendingReader:
    """Reads the pending state of open runs from Temporal and stores it.

    Both the linker (within its budget of Temporal calls) and a tree request (a few runs,
    under a deadline) use it, so a call's ``pending`` has one source.
    """

    store: Store
    connections: Connections
    describes: int = 0

    async def read(self, run: OpenRun) -> bool:
        """Describe one open run and store its pending calls; ``False`` when Temporal did
        not answer (the old state stays, with its age)."""
        try:
            client = await self.connections.client(run.namespace)
            self.describes += 1
            response = await client.workflow_service.describe_workflow_execution(
                DescribeWorkflowExecutionRequest(
                    namespace=run.namespace,
                    execution=WorkflowExecution(workflow_id=run.workflow_id, run_id=run.run_id),
                ),
                timeout=DESCRIBE_TIMEOUT,
            )
        except RPCError as err:
            if err.status == RPCStatusCode.NOT_FOUND:
                return False  # gone (retention on the server): the history read settles it
            logger.debug("describe %s/%s failed: %s", run.namespace, run.workflow_id, err)
            return False
        except (OSError, RuntimeError) as err:
            logger.debug("describe %s/%s failed: %s", run.namespace, run.workflow_id, err)
            return False
        await asyncio.to_thread(
            self.store.save_pending, run, pending_calls(response), datetime.now(UTC)
        )
        return True

    async def refresh(self, runs: Sequence[OpenRun], *, deadline_s: float) -> int:
        """Describe ``runs`` together, giving up on what has not answered by the deadline;
        how many were stored."""
        if not runs:
            return 0
        tasks = [asyncio.ensure_future(self.read(run)) for run in runs]
        done, late = await asyncio.wait(tasks, timeout=deadline_s)
        for task in late:
            task.cancel()
        return sum(1 for task in done if not task.cancelled() and task.result())


# A tree request describes at most this many runs, all together, within this deadline,
# and only those whose pending state is older than PENDING_MAX_AGE.
PENDING_MAX_AGE = timedelta(seconds=2)
MAX_DESCRIBES_PER_TREE = 8
TREE_DEADLINE_S = 1.0


async def refresh_tree_pending(
    store: Store, connections: Connections, namespace: str, workflow_id: str, run_id: str | None
) -> int:
    """Before a tree is shown: describe the open runs in it whose running calls' pending
    state is stale, bounded in count and time; how many were refreshed."""
    runs = await asyncio.to_thread(
        store.stale_pending_runs,
        namespace,
        workflow_id,
        run_id,
        max_age=PENDING_MAX_AGE,
        limit=MAX_DESCRIBES_PER_TREE,
    )
    linked = [run for run in runs if run.namespace in connections.namespaces]
    return await PendingReader(store, connections).refresh(linked, deadline_s=TREE_DEADLINE_S)
