"""Temporal's pending state as the call-tree contract's ``pending`` objects.

A history says a Nexus operation was scheduled, and nothing more until it ends; only
``DescribeWorkflowExecution`` tells that it is backing off at attempt 4 because its handler
keeps failing, or that it waits on a task queue nobody polls. This module turns that answer
into the call-tree contract's ``pending`` objects, keyed the way the tree finds its calls:
``nexus:<scheduled event id>`` and ``activity:<activity id>``.
"""

from __future__ import annotations

from datetime import UTC
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp
from temporalio.api.enums.v1 import PendingActivityState, PendingNexusOperationState
from temporalio.api.failure.v1 import Failure
from temporalio.api.nexus.v1 import NexusOperationExecutionInfo
from temporalio.api.workflow.v1 import PendingNexusOperationInfo
from temporalio.api.workflowservice.v1 import DescribeWorkflowExecutionResponse

from ._history import failure_type

__all__ = ["nexus_pending", "pending_calls"]

# A cause chain longer than this is cut: the first links say what went wrong.
MAX_CAUSE_DEPTH = 8


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


def nexus_pending(op: PendingNexusOperationInfo | NexusOperationExecutionInfo) -> dict[str, Any]:
    """The contract's ``pending`` object of a Nexus operation, from a workflow's pending
    operation or a standalone operation's own description (the same fields)."""
    return {
        "state": _state(
            PendingNexusOperationState.Name(op.state), "PENDING_NEXUS_OPERATION_STATE_"
        ),
        "attempt": op.attempt,
        "last_failure": (
            _failure_json(op.last_attempt_failure) if op.HasField("last_attempt_failure") else None
        ),
        "next_attempt_time": _time(
            op.next_attempt_schedule_time, op.HasField("next_attempt_schedule_time")
        ),
        "blocked_reason": op.blocked_reason or None,
    }


def pending_calls(response: DescribeWorkflowExecutionResponse) -> dict[str, dict[str, Any]]:
    """The contract's ``pending`` object of every pending Nexus operation and activity in a
    describe answer, keyed ``nexus:<scheduled event id>`` or ``activity:<activity id>``."""
    found: dict[str, dict[str, Any]] = {}
    for op in response.pending_nexus_operations:
        found[f"nexus:{op.scheduled_event_id}"] = nexus_pending(op)
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
