"""What a running call is doing now: the pending state Temporal keeps outside history.

A history says a Nexus operation was scheduled, and nothing more until it ends; only
``DescribeWorkflowExecution`` tells that it is backing off at attempt 4 because its handler
keeps failing, or that it waits on a task queue nobody polls. The linker (within its budget)
and a tree request (a few runs, under a deadline) read it through :class:`PendingReader`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.enums.v1 import PendingNexusOperationState, TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import (
    DescribeTaskQueueRequest,
    DescribeWorkflowExecutionRequest,
    DescribeWorkflowExecutionResponse,
)
from temporalio.service import RPCError, RPCStatusCode

from tracer.domain import NodeKind
from tracer.store import NexusEndpoint, OpenRun, Store

from ._connections import Connections
from ._pending_state import pending_calls
from ._standalone import StandaloneOperations

__all__ = [
    "MAX_DESCRIBES_PER_TREE",
    "PENDING_MAX_AGE",
    "PendingReader",
    "refresh_tree_pending",
]

logger = logging.getLogger(__name__)

DESCRIBE_TIMEOUT = timedelta(seconds=5)
# Operations whose handler has not taken them yet.
_NOT_STARTED = (
    PendingNexusOperationState.PENDING_NEXUS_OPERATION_STATE_SCHEDULED,
    PendingNexusOperationState.PENDING_NEXUS_OPERATION_STATE_BACKING_OFF,
)


@dataclass
class PendingReader:
    """Reads the pending state of open runs from Temporal and stores it.

    Both the linker (within its budget of Temporal calls) and a tree request (a few runs,
    under a deadline) use it, so a call's ``pending`` has one source.
    """

    store: Store
    connections: Connections
    describes: int = 0
    # Told of every Temporal call (namespace, method): the linker's budget and counts.
    count_call: Callable[[str, str], None] = lambda namespace, method: None
    _pollers: dict[tuple[str, str], int | None] = field(default_factory=dict)
    _known_endpoints: list[NexusEndpoint] | None = None

    async def read(self, run: OpenRun) -> bool:
        """Describe one open run and store its pending calls; ``False`` when Temporal did
        not answer (the old state stays, with its age)."""
        if run.kind == NodeKind.NEXUS_OPERATION:
            self.describes += 1  # counted by the operation's reader
            client = await self.connections.client(run.namespace)
            return await StandaloneOperations(self.store, self.count_call).read(client, run)
        try:
            client = await self.connections.client(run.namespace)
            self.describes += 1
            self.count_call(run.namespace, "DescribeWorkflowExecution")
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
        calls = pending_calls(response)
        await self._count_pollers(response, calls)
        await asyncio.to_thread(self.store.save_pending, run, calls, datetime.now(UTC))
        return True

    async def _count_pollers(
        self, response: DescribeWorkflowExecutionResponse, calls: dict[str, dict[str, Any]]
    ) -> None:
        """For operations not yet started, how many workers poll the endpoint's task queue
        (``task_queue_pollers``): none is the commonest reason a call hangs."""
        waiting = [
            op
            for op in response.pending_nexus_operations
            if op.state in _NOT_STARTED and f"nexus:{op.scheduled_event_id}" in calls
        ]
        if not waiting:
            return
        targets = {e.name: (e.namespace, e.task_queue) for e in await self._endpoints()}
        for op in waiting:
            namespace, queue = targets.get(op.endpoint, ("", ""))
            if not queue or namespace not in self.connections.namespaces:
                continue
            if (namespace, queue) not in self._pollers:
                self._pollers[(namespace, queue)] = await self._nexus_pollers(namespace, queue)
            pollers = self._pollers[(namespace, queue)]
            if pollers is not None:
                calls[f"nexus:{op.scheduled_event_id}"]["task_queue_pollers"] = pollers

    async def _endpoints(self) -> list[NexusEndpoint]:
        if self._known_endpoints is None:
            self._known_endpoints = await asyncio.to_thread(self.store.endpoints)
        return self._known_endpoints

    async def _nexus_pollers(self, namespace: str, queue: str) -> int | None:
        try:
            client = await self.connections.client(namespace)
            self.describes += 1
            self.count_call(namespace, "DescribeTaskQueue")
            described = await client.workflow_service.describe_task_queue(
                DescribeTaskQueueRequest(
                    namespace=namespace,
                    task_queue=TaskQueue(name=queue),
                    task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_NEXUS,
                ),
                timeout=DESCRIBE_TIMEOUT,
            )
        except (RPCError, OSError, RuntimeError) as err:
            logger.debug("describe task queue %s/%s failed: %s", namespace, queue, err)
            return None
        return len(described.pollers)

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
    store: Store,
    connections: Connections,
    namespace: str,
    workflow_id: str,
    run_id: str | None,
    kind: str = NodeKind.WORKFLOW,
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
        kind=kind,
    )
    linked = [run for run in runs if run.namespace in connections.namespaces]
    return await PendingReader(store, connections).refresh(linked, deadline_s=TREE_DEADLINE_S)
