"""The history linker: discovers runs per namespace, reads histories, stores their links.

Histories are the durable source of every edge: spans only add detail. The linker lists
executions through the visibility API, re-reads runs until they close, follows links into
other configured namespaces, and resumes from a per-namespace cursor after a restart.
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from temporalio.api.operatorservice.v1 import ListNexusEndpointsRequest
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError, RPCStatusCode

from tracer.domain import Status
from tracer.jobs import LeaseHolder, run_periodically
from tracer.store import LinkFacts, RunFacts, Store

from ._connections import Connections
from ._history import parse_history

__all__ = ["HistoryLinker", "PollReport"]

logger = logging.getLogger(__name__)

# Visibility is eventually consistent: re-list runs that closed a little before the cursor.
CURSOR_OVERLAP = timedelta(minutes=2)
MAX_CONCURRENT_FETCHES = 8
# How often the Nexus endpoints (endpoint -> target namespace) are listed again.
ENDPOINTS_REFRESH_SECONDS = 30.0
# Longest wait between two reads of a workflow that is still running.
MAX_REREAD_INTERVAL = 30.0


@dataclass
class PollReport:
    """What one pass over the namespaces did."""

    runs_read: int = 0
    errors: int = 0


class HistoryLinker:
    """Keeps the store in step with the histories of the configured namespaces."""

    def __init__(
        self,
        store: Store,
        connections: Connections,
        *,
        poll_interval: float = 1.0,
        leases: LeaseHolder | None = None,
    ) -> None:
        self.store = store
        self.connections = connections
        self.poll_interval = poll_interval
        # With leases (kept by the collector), this linker reads only the namespaces it
        # holds: several collectors on one database share the work.
        self.leases = leases
        self._fetch_slots = asyncio.Semaphore(MAX_CONCURRENT_FETCHES)
        self._failing: set[str] = set()
        # When each running run was last read (monotonic seconds); forgotten once it closed.
        self._last_read: dict[str, float] = {}
        self._endpoints: list[tuple[str, str, str]] = []
        self._endpoints_read_at = -math.inf

    async def run(self, stop: asyncio.Event) -> None:
        """Poll every namespace until ``stop`` is set."""
        await asyncio.to_thread(self.store.ensure_namespace_states, self.connections.namespaces)
        logger.info("linking namespaces: %s", ", ".join(self.connections.namespaces))

        async def poll() -> None:
            await self.poll_once()

        await run_periodically(poll, stop, name="linker pass", interval=self.poll_interval)

    async def poll_once(self) -> PollReport:
        """One pass: refresh endpoints, then read what changed in every namespace."""
        namespaces = self.connections.namespaces
        if self.leases is not None:
            held = self.leases.held
            namespaces = [namespace for namespace in namespaces if namespace in held]
        await self._refresh_endpoints()
        reports = await asyncio.gather(*(self._poll_namespace(ns) for ns in namespaces))
        return PollReport(
            runs_read=sum(report.runs_read for report in reports),
            errors=sum(report.errors for report in reports),
        )

    async def _refresh_endpoints(self) -> None:
        """Re-read the Nexus endpoints now and then (they name sync handlers' namespaces)."""
        if time.monotonic() - self._endpoints_read_at < ENDPOINTS_REFRESH_SECONDS:
            return
        for namespace in self.connections.namespaces:
            if namespace in self._failing:
                continue  # don't wait on a dead server before every pass
            try:
                client = await self.connections.client(namespace)
                response = await client.operator_service.list_nexus_endpoints(
                    ListNexusEndpointsRequest(page_size=1000)
                )
            except (RuntimeError, RPCError):
                continue  # reported per namespace below; endpoints are a nicety
            rows = [
                (
                    endpoint.spec.name,
                    endpoint.spec.target.worker.namespace,
                    endpoint.spec.target.worker.task_queue,
                )
                for endpoint in response.endpoints
                if endpoint.spec.target.HasField("worker")
            ]
            if rows != self._endpoints:
                await asyncio.to_thread(self.store.save_endpoints, rows)
                self._endpoints = rows
            self._endpoints_read_at = time.monotonic()
            return

    async def _poll_namespace(self, namespace: str) -> PollReport:
        report = PollReport()
        started = time.monotonic()
        # Every run that closed before this moment is in this listing (or an earlier one):
        # the next pass only needs runs closed since then, plus those still running.
        listed_at = datetime.now(UTC)
        try:
            client = await self.connections.client(namespace)
            state = await asyncio.to_thread(self.store.namespace_state, namespace)
            cursor = state.close_cursor if state is not None else None
            query = "ExecutionStatus = 'Running'"
            if cursor is not None:
                since = (cursor - CURSOR_OVERLAP).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
                query += f" OR CloseTime >= '{since}'"
            else:
                query = ""  # first pass: everything the namespace still keeps
            listed = [e async for e in client.list_workflows(query, page_size=1000)]
            known = await asyncio.to_thread(
                self.store.runs_progress, namespace, [e.run_id for e in listed]
            )
            new = [(e.id, e.run_id) for e in listed if e.run_id not in known]
            # Stored as running: read again once it closed, or when its turn comes.
            running = [
                (e.id, e.run_id)
                for e in listed
                if known.get(e.run_id, ("",))[0] == Status.RUNNING
                and (
                    e.status != WorkflowExecutionStatus.RUNNING or self._due(e.run_id, e.start_time)
                )
            ]
            if cursor is None and new:
                logger.info("%s: first pass, reading %d histories", namespace, len(new))
            # New runs first: a handler that just started is an edge waiting to be shown.
            read: list[RunFacts | None] = []
            for batch in (new, running):
                read += await asyncio.gather(
                    *(
                        self._read_run(client, namespace, wid, rid, known.get(rid, ("", 0))[1])
                        for wid, rid in batch
                    )
                )
            changed = [facts for facts in read if facts is not None]
            report.runs_read = len(changed)
            await self._follow_links(changed)
        except (RuntimeError, RPCError, OSError) as err:
            self.connections.forget(namespace)
            message = _describe_error(err, self.connections.address(namespace))
            if namespace not in self._failing:
                logger.error("namespace %s: %s", namespace, message)
                self._failing.add(namespace)
            await asyncio.to_thread(
                self.store.set_namespace_status, namespace, "error", error=message
            )
            report.errors = 1
            return report
        if namespace in self._failing:
            logger.info("namespace %s: reachable again", namespace)
            self._failing.discard(namespace)
        await asyncio.to_thread(
            self.store.set_namespace_status,
            namespace,
            "ok",
            close_cursor=listed_at,
            runs_linked=report.runs_read,
        )
        if report.runs_read:
            logger.debug(
                "%s: read %d histories in %.2fs",
                namespace,
                report.runs_read,
                time.monotonic() - started,
            )
        return report

    def _due(self, run_id: str, start_time: datetime) -> bool:
        """Whether a running run is due a new read: young runs every pass, old ones less often.

        The interval is a twentieth of the run's age, between the poll interval and
        :data:`MAX_REREAD_INTERVAL`: a run that has been going for an hour is not re-read
        every second, yet a closed run is always read at once (see the caller).
        """
        now = time.monotonic()
        interval = min((datetime.now(UTC) - start_time).total_seconds() / 20, MAX_REREAD_INTERVAL)
        if (
            interval > self.poll_interval
            and now - self._last_read.get(run_id, -math.inf) < interval
        ):
            return False
        self._last_read[run_id] = now
        return True

    async def _read_run(
        self, client: Client, namespace: str, workflow_id: str, run_id: str, known_length: int = 0
    ) -> RunFacts | None:
        """Read and store a run; ``None`` when it is gone or has no new event since last time."""
        async with self._fetch_slots:
            try:
                history = await client.get_workflow_handle(
                    workflow_id, run_id=run_id
                ).fetch_history()
            except RPCError as err:
                if err.status == RPCStatusCode.NOT_FOUND:
                    return None  # deleted by retention between list and read
                raise
        if history.events and history.events[-1].event_id == known_length:
            return None  # a running workflow with nothing new: nothing to parse or write
        facts = parse_history(namespace, workflow_id, run_id or history.run_id, history.events)
        if facts.status != Status.RUNNING:
            self._last_read.pop(facts.run_id, None)
        await asyncio.to_thread(self.store.save_run, facts)
        return facts

    async def _follow_links(self, read: Iterable[RunFacts]) -> None:
        """Read runs that links point to in other configured namespaces, at once."""
        links = [link for facts in read for link in facts.links]
        if not links:
            return
        targets = await asyncio.to_thread(self._unread_ends, links)
        for namespace, workflow_id, run_id in targets:
            try:
                client = await self.connections.client(namespace)
                await self._read_run(client, namespace, workflow_id, run_id)
            except (RuntimeError, RPCError) as err:
                logger.debug("could not follow link to %s/%s: %s", namespace, workflow_id, err)

    def _unread_ends(self, links: Iterable[LinkFacts]) -> set[tuple[str, str, str]]:
        """Ends of ``links`` in configured namespaces that the store has not read yet
        (blocking: runs in a worker thread)."""
        ends: dict[str, set[tuple[str, str]]] = {}
        for link in links:
            for namespace, workflow_id, run_id in (
                (link.handler_namespace, link.handler_workflow_id, link.handler_run_id),
                (link.caller_namespace, link.caller_workflow_id, link.caller_run_id),
            ):
                if namespace in self.connections.configs and run_id:
                    ends.setdefault(namespace, set()).add((workflow_id, run_id))
        unread: set[tuple[str, str, str]] = set()
        for namespace, pairs in ends.items():
            known = self.store.runs_progress(namespace, sorted({run_id for _, run_id in pairs}))
            unread.update((namespace, wid, rid) for wid, rid in pairs if rid not in known)
        return unread


def _describe_error(err: BaseException, address: str) -> str:
    """One line a person can act on, instead of the transport's nested error."""
    text = str(err)
    if isinstance(err, RuntimeError) and "connect" in text.lower():
        reasons = re.findall(r'message: "([^"]+)"', text)
        return f"cannot reach Temporal at {address}: {reasons[-1] if reasons else text}"
    if isinstance(err, RPCError):
        if err.status == RPCStatusCode.NOT_FOUND:
            return f"namespace not found on the server ({err.message})"
        if err.status == RPCStatusCode.PERMISSION_DENIED:
            return f"permission denied ({err.message})"
        return f"{err.status.name}: {err.message}"
    return str(err) or type(err).__name__
