"""Every Temporal call the linker makes in a namespace: counted, and paid from its budget."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime

from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.enums.v1 import WorkflowExecutionStatus
from temporalio.api.history.v1 import HistoryEvent
from temporalio.api.operatorservice.v1 import ListNexusEndpointsRequest
from temporalio.api.workflowservice.v1 import (
    GetWorkflowExecutionHistoryRequest,
    GetWorkflowExecutionHistoryReverseRequest,
    ListWorkflowExecutionsRequest,
)
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from ._budget import TokenBucket

__all__ = ["CallCounts", "History", "ListedRun", "TemporalCalls"]

# Histories at least this long are first asked for their last event only: an idle run
# that has not changed then costs one small answer, not its whole history again.
CHECK_LAST_EVENT_FROM = 100
LIST_PAGE_SIZE = 1000
_RUNNING = WorkflowExecutionStatus.WORKFLOW_EXECUTION_STATUS_RUNNING


@dataclass
class CallCounts:
    """Temporal calls made by one linker, by namespace and by method (for operators and
    benchmarks)."""

    by_namespace: Counter[str] = field(default_factory=Counter)
    by_method: Counter[str] = field(default_factory=Counter)

    @property
    def total(self) -> int:
        """Every call made."""
        return sum(self.by_namespace.values())


@dataclass(frozen=True)
class ListedRun:
    """A run as the visibility API lists it."""

    workflow_id: str
    run_id: str
    running: bool
    start_time: datetime | None
    close_time: datetime | None


@dataclass(frozen=True)
class History:
    """A run's history, or why there is none to parse.

    Attributes:
        events: Every event, in order (empty when ``gone`` or ``unchanged``).
        gone: The run does not exist (deleted by Temporal's retention, or named by a
            link that was wrong).
        unchanged: It has no event beyond the ones already read.
    """

    events: list[HistoryEvent] = field(default_factory=list)
    gone: bool = False
    unchanged: bool = False


def _time(value: object) -> datetime | None:
    seconds = getattr(value, "seconds", 0)
    return value.ToDatetime(tzinfo=UTC) if seconds else None  # type: ignore[attr-defined]


class TemporalCalls:
    """The linker's calls to Temporal in one namespace; each one spends a token of the
    namespace's budget and is counted."""

    def __init__(
        self, client: Client, namespace: str, budget: TokenBucket, counts: CallCounts
    ) -> None:
        self.client = client
        self.namespace = namespace
        self.budget = budget
        self.counts = counts

    def _spend(self, method: str) -> None:
        self.budget.spend()
        self.counts.by_namespace[self.namespace] += 1
        self.counts.by_method[method] += 1

    async def list_runs(self, query: str) -> list[ListedRun]:
        """Every run matching a visibility ``query``, one call per page."""
        runs: list[ListedRun] = []
        token = b""
        while True:
            self._spend("ListWorkflowExecutions")
            page = await self.client.workflow_service.list_workflow_executions(
                ListWorkflowExecutionsRequest(
                    namespace=self.namespace,
                    page_size=LIST_PAGE_SIZE,
                    next_page_token=token,
                    query=query,
                )
            )
            runs.extend(
                ListedRun(
                    workflow_id=info.execution.workflow_id,
                    run_id=info.execution.run_id,
                    running=info.status == _RUNNING,
                    start_time=_time(info.start_time),
                    close_time=_time(info.close_time),
                )
                for info in page.executions
            )
            token = page.next_page_token
            if not token:
                return runs

    async def fetch_history(self, workflow_id: str, run_id: str, known_length: int = 0) -> History:
        """The history of a run, unless it has nothing beyond ``known_length`` events."""
        execution = WorkflowExecution(workflow_id=workflow_id, run_id=run_id)
        service = self.client.workflow_service
        try:
            if known_length >= CHECK_LAST_EVENT_FROM:
                self._spend("GetWorkflowExecutionHistoryReverse")
                last = await service.get_workflow_execution_history_reverse(
                    GetWorkflowExecutionHistoryReverseRequest(
                        namespace=self.namespace, execution=execution, maximum_page_size=1
                    )
                )
                if last.history.events and last.history.events[0].event_id == known_length:
                    return History(unchanged=True)
            events: list[HistoryEvent] = []
            token = b""
            while True:
                self._spend("GetWorkflowExecutionHistory")
                page = await service.get_workflow_execution_history(
                    GetWorkflowExecutionHistoryRequest(
                        namespace=self.namespace,
                        execution=execution,
                        next_page_token=token,
                        skip_archival=True,
                    )
                )
                events.extend(page.history.events)
                token = page.next_page_token
                if not token:
                    break
        except RPCError as err:
            # Deleted, or never a run at all (a link or header naming a run id that is
            # not one): nothing will ever be read there.
            if err.status in (RPCStatusCode.NOT_FOUND, RPCStatusCode.INVALID_ARGUMENT):
                return History(gone=True)
            raise
        if events and events[-1].event_id == known_length:
            return History(unchanged=True)
        return History(events=events)

    async def list_endpoints(self) -> list[tuple[str, str, str]]:
        """``(name, target namespace, target task queue)`` of the server's Nexus endpoints."""
        self._spend("ListNexusEndpoints")
        response = await self.client.operator_service.list_nexus_endpoints(
            ListNexusEndpointsRequest(page_size=1000)
        )
        return [
            (
                endpoint.spec.name,
                endpoint.spec.target.worker.namespace,
                endpoint.spec.target.worker.task_queue,
            )
            for endpoint in response.endpoints
            if endpoint.spec.target.HasField("worker")
        ]
