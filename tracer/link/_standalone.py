"""Standalone Nexus operations: started by a client, not by a workflow.

No caller history records them, so the linker finds them through visibility
(``ListNexusOperationExecutions``, by start and close time) and reads each one that changed
with ``DescribeNexusOperationExecution``. Each is stored as a run of kind
``nexus_operation`` (its operation id and run id where a workflow's would be) with one call,
event id 0, that holds what a caller's call would: endpoint, request id, operation token,
outcome. Its handler workflow hangs under it through the link the description carries.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from google.protobuf.timestamp_pb2 import Timestamp
from temporalio.api.enums.v1 import NexusOperationExecutionStatus
from temporalio.api.nexus.v1 import NexusOperationExecutionListInfo
from temporalio.api.workflowservice.v1 import (
    DescribeNexusOperationExecutionRequest,
    DescribeNexusOperationExecutionResponse,
    ListNexusOperationExecutionsRequest,
)
from temporalio.client import Client
from temporalio.service import RPCError

from tracer.domain import LinkKind, LinkSource, NodeKind, Status
from tracer.store import CallFacts, LinkFacts, OpenRun, RunFacts, Store

from ._history import describe_failure
from ._pending_state import nexus_pending

__all__ = ["StandaloneOperations", "operation_facts"]

logger = logging.getLogger(__name__)

_STATUS = {
    NexusOperationExecutionStatus.NEXUS_OPERATION_EXECUTION_STATUS_RUNNING: Status.RUNNING,
    NexusOperationExecutionStatus.NEXUS_OPERATION_EXECUTION_STATUS_COMPLETED: Status.COMPLETED,
    NexusOperationExecutionStatus.NEXUS_OPERATION_EXECUTION_STATUS_FAILED: Status.FAILED,
    NexusOperationExecutionStatus.NEXUS_OPERATION_EXECUTION_STATUS_CANCELED: Status.CANCELED,
    NexusOperationExecutionStatus.NEXUS_OPERATION_EXECUTION_STATUS_TERMINATED: Status.TERMINATED,
    NexusOperationExecutionStatus.NEXUS_OPERATION_EXECUTION_STATUS_TIMED_OUT: Status.TIMED_OUT,
}
# Visibility is eventually consistent: list again what changed a little before the cursor.
CURSOR_OVERLAP = timedelta(minutes=2)
# A namespace whose server cannot list standalone operations is asked again this late.
UNSUPPORTED_RETRY = timedelta(minutes=10)
LIST_PAGE_SIZE = 1000
TIMEOUT = timedelta(seconds=10)


def _time(stamp: Timestamp, present: bool) -> datetime | None:
    return stamp.ToDatetime(tzinfo=UTC) if present else None


def operation_facts(namespace: str, response: DescribeNexusOperationExecutionResponse) -> RunFacts:
    """What a standalone operation's description says, as the store takes a run."""
    info = response.info
    status = _STATUS.get(info.status, Status.RUNNING)
    error_type = error_message = None
    if response.HasField("failure"):
        error_type, error_message = describe_failure(response.failure)
    elif status != Status.RUNNING and info.HasField("last_attempt_failure"):
        error_type, error_message = describe_failure(info.last_attempt_failure)
    start = _time(info.schedule_time, info.HasField("schedule_time")) or datetime.now(UTC)
    close = _time(info.close_time, info.HasField("close_time"))
    name = f"{info.endpoint}/{info.service}/{info.operation}"
    call = CallFacts(
        event_id=0,
        kind=NodeKind.NEXUS_OPERATION,
        name=name,
        start_time=start,
        status=status,
        end_time=close,
        error_type=error_type,
        error_message=error_message,
        attempt=max(info.attempt, 1),
        endpoint=info.endpoint,
        service=info.service,
        operation=info.operation,
        request_id=info.request_id or None,
        operation_token=info.operation_token or None,
    )
    links = [
        LinkFacts(
            kind=LinkKind.NEXUS,
            source=LinkSource.CALLER_HISTORY,
            caller_namespace=namespace,
            caller_workflow_id=info.operation_id,
            caller_run_id=info.run_id,
            handler_namespace=link.workflow_event.namespace,
            handler_workflow_id=link.workflow_event.workflow_id,
            handler_run_id=link.workflow_event.run_id,
            caller_request_id=info.request_id,
        )
        for link in info.links
        if link.HasField("workflow_event") and link.workflow_event.run_id
    ]
    return RunFacts(
        namespace=namespace,
        workflow_id=info.operation_id,
        run_id=info.run_id,
        workflow_type=name,
        status=status,
        start_time=start,
        close_time=close,
        error_type=error_type,
        error_message=error_message,
        # Grows with every change: an older read never overwrites a newer one.
        history_length=info.state_transition_count,
        calls=[call],
        links=links,
        kind=NodeKind.NEXUS_OPERATION,
    )


@dataclass
class StandaloneOperations:
    """Finds the standalone operations of each namespace that changed, and stores them.

    ``count_call`` is told of every Temporal call (namespace, method), so the linker's
    budget sees them.
    """

    store: Store
    count_call: Callable[[str, str], None] = lambda namespace, method: None
    _since: dict[str, datetime] = field(default_factory=dict)
    _unsupported_until: dict[str, datetime] = field(default_factory=dict)

    async def poll(self, client: Client, namespace: str) -> int:
        """Read what changed since the last poll in ``namespace``; how many were stored."""
        now = datetime.now(UTC)
        if self._unsupported_until.get(namespace, now) > now:
            return 0
        since = self._since.get(namespace)
        query = ""
        if since is not None:
            stamp = (since - CURSOR_OVERLAP).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
            query = f'StartTime > "{stamp}" OR CloseTime > "{stamp}"'
        try:
            listed = await self._list(client, namespace, query)
        except RPCError as err:
            # Servers without standalone operations (or with them turned off) say so here.
            self._unsupported_until[namespace] = now + UNSUPPORTED_RETRY
            logger.info(
                "standalone Nexus operations are not listed in %s (%s); asking again in %s",
                namespace,
                err.message,
                UNSUPPORTED_RETRY,
            )
            return 0
        self._since[namespace] = now
        known = await asyncio.to_thread(
            self.store.runs_progress, namespace, [info.run_id for info in listed]
        )
        changed = []
        for info in listed:
            stored = known.get(info.run_id)
            status = _STATUS.get(info.status, Status.RUNNING)
            if stored is None or (stored.status, stored.history_length) != (
                status,
                info.state_transition_count,
            ):
                changed.append(info)
        for info in changed:
            await self.read(client, OpenRun(namespace, info.operation_id, info.run_id))
        return len(changed)

    async def read(self, client: Client, run: OpenRun) -> bool:
        """Describe one operation and store it (and, while it runs, its pending state)."""
        self.count_call(run.namespace, "DescribeNexusOperationExecution")
        try:
            response = await client.workflow_service.describe_nexus_operation_execution(
                DescribeNexusOperationExecutionRequest(
                    namespace=run.namespace,
                    operation_id=run.workflow_id,
                    run_id=run.run_id,
                    include_outcome=True,
                ),
                timeout=TIMEOUT,
            )
        except RPCError as err:
            logger.debug("describe operation %s/%s: %s", run.namespace, run.workflow_id, err)
            return False
        facts = operation_facts(run.namespace, response)
        await asyncio.to_thread(self.store.save_run, facts)
        if facts.status == Status.RUNNING:
            pending = {"nexus:0": nexus_pending(response.info)}
            await asyncio.to_thread(self.store.save_pending, run, pending, datetime.now(UTC))
        return True

    async def _list(
        self, client: Client, namespace: str, query: str
    ) -> list[NexusOperationExecutionListInfo]:
        found: list[NexusOperationExecutionListInfo] = []
        token = b""
        while True:
            self.count_call(namespace, "ListNexusOperationExecutions")
            page = await client.workflow_service.list_nexus_operation_executions(
                ListNexusOperationExecutionsRequest(
                    namespace=namespace,
                    page_size=LIST_PAGE_SIZE,
                    next_page_token=token,
                    query=query,
                ),
                timeout=TIMEOUT,
            )
            found.extend(page.operations)
            token = page.next_page_token
            if not token:
                return found
