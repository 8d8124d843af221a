"""The history linker: discovers runs per namespace, reads histories, stores their links.

Histories are the durable source of every edge: spans only add detail. Each pass, the
collector holding a namespace's lease lists the runs that started or closed since its
cursors (:mod:`._discovery`) and queues them; every collector linking the namespace then
reads what the work queue in the store hands it (:class:`tracer.store.WorkQueue`):

1. runs discovery found, and runs their links point at: at once;
2. runs a span or a page view asked for: within the budget;
3. open runs by staleness, the stalest first: within the budget.

An open run read with an activity or Nexus call still running is also described (its
pending state: attempts, last failure), and standalone Nexus operations are listed every
few seconds; both are paid from the same budget.

The budget is a number of Temporal calls a second per namespace, shared by every call the
linker makes there (:class:`._budget.TokenBucket`) and split between the collectors alive.
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from temporalio.service import RPCError, RPCStatusCode

from tracer.domain import Status
from tracer.jobs import DEFAULT_LEASE_TTL, LeaseKeeper, run_periodically
from tracer.store import ClaimedRun, Priority, RunFacts, RunProgress, RunRead, Store

from ._budget import DEFAULT_CALLS_PER_SECOND, TokenBucket
from ._connections import Connections
from ._discovery import SWEEP_EVERY, Cursors, runs_to_read
from ._history import parse_history
from ._pending import PendingReader
from ._standalone import StandaloneOperations
from ._temporal import CallCounts, TemporalCalls

__all__ = ["HistoryLinker", "PollReport"]

logger = logging.getLogger(__name__)

MAX_CONCURRENT_FETCHES = 8
# Runs claimed at a time: small enough to be read well before the claim expires.
CLAIM_BATCH = 4 * MAX_CONCURRENT_FETCHES
# How often the Nexus endpoints (endpoint -> target namespace) are listed again.
ENDPOINTS_REFRESH_SECONDS = 30.0
# An open run is due a re-read after a twentieth of its age, within these bounds; the
# budget decides when it is actually read.
MIN_REREAD_INTERVAL = 10.0
MAX_REREAD_INTERVAL = 300.0
# Rounds of reading runs that other reads' links point at, within one pass.
FOLLOW_ROUNDS = 3
# Errors that say the server (or the way to it) is in trouble, not the run asked for.
_TRANSIENT = {
    RPCStatusCode.UNAVAILABLE,
    RPCStatusCode.DEADLINE_EXCEEDED,
    RPCStatusCode.CANCELLED,
    RPCStatusCode.RESOURCE_EXHAUSTED,
    RPCStatusCode.UNKNOWN,
    RPCStatusCode.INTERNAL,
}
# Standalone Nexus operations are listed this often per namespace (seconds).
STANDALONE_EVERY = 5.0
# How long the describes of one batch of runs with calls in flight may take.
PENDING_DEADLINE_S = 5.0
# The longest a pass of the collector's loop spends reading one namespace's queue before
# it lists again (a backfill goes on in the next pass).
PASS_READ_SECONDS = 2.0


@dataclass
class PollReport:
    """What one pass over the namespaces did."""

    runs_read: int = 0
    errors: int = 0


@dataclass
class _Read:
    """One claimed run, read (or not)."""

    result: RunRead
    facts: RunFacts | None = None
    new: bool = False


@dataclass
class _Drained:
    runs_read: int = 0
    errors: int = 0
    poked: set[str] = field(default_factory=set)


def next_due(start_time: datetime | None, now: datetime) -> datetime:
    """When an open run that started at ``start_time`` is due a re-read for staleness."""
    age = (now - start_time).total_seconds() if start_time is not None else 0.0
    return now + timedelta(seconds=min(max(age / 20, MIN_REREAD_INTERVAL), MAX_REREAD_INTERVAL))


class HistoryLinker:
    """Keeps the store in step with the histories of the configured namespaces.

    Args:
        store: Where runs, links and the work queue live.
        connections: Temporal clients per namespace.
        poll_interval: Seconds between two passes.
        leases: The collector's lease keeper: discovery runs only in the namespaces it
            holds, and the budget is split between the live collectors. Without it this
            linker discovers in every namespace and spends the whole budget.
        calls_per_second: The budget of Temporal calls a second per namespace.
    """

    def __init__(
        self,
        store: Store,
        connections: Connections,
        *,
        poll_interval: float = 1.0,
        leases: LeaseKeeper | None = None,
        calls_per_second: float = DEFAULT_CALLS_PER_SECOND,
    ) -> None:
        self.store = store
        self.connections = connections
        self.poll_interval = poll_interval
        self.leases = leases
        self.calls_per_second = calls_per_second
        self.id = leases.id if leases is not None else uuid.uuid4().hex
        self.claim_ttl = leases.ttl if leases is not None else DEFAULT_LEASE_TTL
        self.calls = CallCounts()
        """Temporal calls made so far, by namespace and method."""
        self._fetch_slots = asyncio.Semaphore(MAX_CONCURRENT_FETCHES)
        self._failing: set[str] = set()
        self._budgets: dict[str, TokenBucket] = {}
        self._swept_at: dict[str, float] = {}
        self._endpoints: list[tuple[str, str, str]] = []
        self._endpoints_read_at = -math.inf
        self._pending = PendingReader(store, connections, count_call=self._spend)
        self._standalone = StandaloneOperations(store, count_call=self._spend)
        self._standalone_at: dict[str, float] = {}

    async def run(self, stop: asyncio.Event) -> None:
        """Poll every namespace until ``stop`` is set; then give back unread claims."""
        await asyncio.to_thread(self.store.ensure_namespace_states, self.connections.namespaces)
        logger.info("linking namespaces: %s", ", ".join(self.connections.namespaces))

        async def poll() -> None:
            await self.poll_once(read_seconds=PASS_READ_SECONDS)

        try:
            await run_periodically(poll, stop, name="linker pass", interval=self.poll_interval)
        finally:
            try:
                await asyncio.to_thread(self.store.release_runs, self.id)
            except Exception as err:  # the claims expire anyway, within the lease TTL
                logger.warning("could not give back claimed runs: %s", err)

    async def poll_once(self, *, read_seconds: float | None = None) -> PollReport:
        """One pass: list what changed where this collector holds the lease, then read
        what the work queue hands it in every namespace.

        Args:
            read_seconds: Stop taking more runs from a namespace's queue after this long
                (``None``: until nothing is left that discovery asked for).
        """
        namespaces = self.connections.namespaces
        held = namespaces
        if self.leases is not None:
            holding = self.leases.held
            held = [namespace for namespace in namespaces if namespace in holding]
        self._share_budget()
        await self._refresh_endpoints()
        report = PollReport()
        listed = await asyncio.gather(*(self._discover(ns) for ns in held))
        report.errors += sum(listed)
        todo = [ns for ns in namespaces if ns not in self._failing or ns not in held]
        for _ in range(FOLLOW_ROUNDS):
            drained = await asyncio.gather(*(self._drain(ns, read_seconds) for ns in todo))
            report.runs_read += sum(d.runs_read for d in drained)
            report.errors += sum(d.errors for d in drained)
            poked = set().union(*(d.poked for d in drained))
            todo = [ns for ns in namespaces if ns in poked]
            if not todo:
                break
        return report

    def _share_budget(self) -> None:
        """Each live collector spends its share of the namespace budget."""
        collectors = max(self.leases.live, 1) if self.leases is not None else 1
        for namespace in self.connections.namespaces:
            self._budget(namespace).rate = self.calls_per_second / collectors

    def _budget(self, namespace: str) -> TokenBucket:
        bucket = self._budgets.get(namespace)
        if bucket is None:
            bucket = self._budgets[namespace] = TokenBucket(self.calls_per_second)
        return bucket

    def _spend(self, namespace: str, method: str) -> None:
        """A Temporal call made outside :class:`TemporalCalls` (describes, standalone
        operations): paid from the namespace's budget and counted like the others."""
        self._budget(namespace).spend()
        self.calls.by_namespace[namespace] += 1
        self.calls.by_method[method] += 1

    async def _calls(self, namespace: str) -> TemporalCalls:
        client = await self.connections.client(namespace)
        return TemporalCalls(client, namespace, self._budget(namespace), self.calls)

    async def _refresh_endpoints(self) -> None:
        """Re-read the Nexus endpoints now and then (they name sync handlers' namespaces)."""
        if time.monotonic() - self._endpoints_read_at < ENDPOINTS_REFRESH_SECONDS:
            return
        for namespace in self.connections.namespaces:
            if namespace in self._failing:
                continue  # don't wait on a dead server before every pass
            try:
                rows = await (await self._calls(namespace)).list_endpoints()
            except (RuntimeError, RPCError):
                continue  # reported per namespace by discovery; endpoints are a nicety
            if rows != self._endpoints:
                await asyncio.to_thread(self.store.save_endpoints, rows)
                self._endpoints = rows
            self._endpoints_read_at = time.monotonic()
            return

    async def _discover(self, namespace: str) -> int:
        """List the runs that started or closed since the cursors and queue those to read;
        return 1 on error, else 0."""
        listed_at = datetime.now(UTC)
        sweep = time.monotonic() - self._swept_at.get(namespace, -math.inf) >= SWEEP_EVERY
        try:
            calls = await self._calls(namespace)
            state = await asyncio.to_thread(self.store.namespace_state, namespace)
            cursors = Cursors(
                state.start_cursor if state else None, state.close_cursor if state else None
            )
            listed = await calls.list_runs(cursors.query(sweep=sweep))
            known = await asyncio.to_thread(
                self.store.runs_progress, namespace, [run.run_id for run in listed]
            )
            found = runs_to_read(
                listed,
                {run_id: (seen.status, seen.history_length) for run_id, seen in known.items()},
            )
            if found:
                if cursors.query() == "":
                    logger.info("%s: first pass, %d histories to read", namespace, len(found))
                await asyncio.to_thread(self.store.enqueue_runs, namespace, found)
            cursors = cursors.advance(listed, listed_at)
        except (RuntimeError, RPCError, OSError) as err:
            await self._failed(namespace, err)
            return 1
        await self._discover_operations(namespace)
        if sweep:
            self._swept_at[namespace] = time.monotonic()
        if namespace in self._failing:
            logger.info("namespace %s: reachable again", namespace)
            self._failing.discard(namespace)
        await asyncio.to_thread(
            self.store.set_namespace_status,
            namespace,
            "ok",
            close_cursor=cursors.close,
            start_cursor=cursors.start,
        )
        return 0

    async def _discover_operations(self, namespace: str) -> None:
        """Standalone Nexus operations that started or closed lately (every few seconds:
        they are rare, and a list costs a call even when nothing changed)."""
        if time.monotonic() - self._standalone_at.get(namespace, -math.inf) < STANDALONE_EVERY:
            return
        self._standalone_at[namespace] = time.monotonic()
        try:
            await self._standalone.poll(await self.connections.client(namespace), namespace)
        except (RuntimeError, RPCError, OSError) as err:
            logger.info("namespace %s: standalone operations not read: %s", namespace, err)

    async def _failed(self, namespace: str, err: BaseException) -> None:
        self.connections.forget(namespace)
        message = _describe_error(err, self.connections.address(namespace))
        if namespace not in self._failing:
            logger.error("namespace %s: %s", namespace, message)
            self._failing.add(namespace)
        await asyncio.to_thread(self.store.set_namespace_status, namespace, "error", error=message)

    async def _drain(self, namespace: str, read_seconds: float | None) -> _Drained:
        """Read what the queue hands this collector in ``namespace``: everything discovery
        asked for, then requests and stale runs as far as the budget allows."""
        drained = _Drained()
        started = time.monotonic()
        budget = self._budget(namespace)
        try:
            calls = await self._calls(namespace)
            while read_seconds is None or time.monotonic() - started < read_seconds:
                claimed = await asyncio.to_thread(
                    self.store.claim_runs,
                    namespace,
                    self.id,
                    discovery=CLAIM_BATCH,
                    budgeted=min(CLAIM_BATCH, budget.available()),
                    ttl=self.claim_ttl,
                )
                if not claimed:
                    break
                reads = await self._read_claimed(calls, claimed)
                drained.runs_read += sum(1 for read in reads if read.facts is not None)
                drained.poked |= await self._follow(reads)
        except (RuntimeError, RPCError, OSError) as err:
            # Discovery reports the namespace's health; the runs go back to the queue.
            logger.info("namespace %s: reading runs failed, retrying next pass: %s", namespace, err)
            self.connections.forget(namespace)
            drained.errors = 1
        if drained.runs_read:
            await asyncio.to_thread(self.store.add_runs_linked, namespace, drained.runs_read)
        return drained

    async def _read_claimed(
        self, calls: TemporalCalls, claimed: Sequence[ClaimedRun]
    ) -> list[_Read]:
        """Read a batch of claimed runs, store what changed and give the claims back."""
        namespace = calls.namespace
        # A run is not started after this: its claim could have moved on by the end.
        deadline = time.monotonic() + self.claim_ttl.total_seconds() / 2
        known = await asyncio.to_thread(
            self.store.runs_progress, namespace, [run.run_id for run in claimed]
        )
        outcomes = await asyncio.gather(
            *(self._read_one(calls, run, known.get(run.run_id), deadline) for run in claimed),
            return_exceptions=True,
        )
        reads = [
            outcome if isinstance(outcome, _Read) else _Read(RunRead(run.run_id, read=False))
            for run, outcome in zip(claimed, outcomes, strict=True)
        ]
        changed = [read.facts for read in reads if read.facts is not None]
        known_endpoints = {name for name, _, _ in self._endpoints}
        if any(
            call.endpoint and call.endpoint not in known_endpoints
            for facts in changed
            for call in facts.calls
        ):
            self._endpoints_read_at = -math.inf  # a new endpoint: list them next pass
        try:
            if changed:
                await asyncio.to_thread(self.store.save_runs, changed)
        except BaseException:
            # Nothing was stored: every run goes back to the queue as it was.
            unread = [RunRead(run.run_id, read=False) for run in claimed]
            await asyncio.to_thread(self.store.finish_runs, namespace, self.id, unread)
            raise
        await asyncio.to_thread(
            self.store.finish_runs, namespace, self.id, [read.result for read in reads]
        )
        await self._describe_in_flight(namespace, [read.result.run_id for read in reads])
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome
        return reads

    async def _describe_in_flight(self, namespace: str, run_ids: list[str]) -> None:
        """Read what Temporal says of the running calls of the open runs just read (their
        retries and last failures are not in history), within the budget: the rest wait
        for their next read."""
        runs = await asyncio.to_thread(self.store.in_flight_runs, namespace, run_ids)
        room = self._budget(namespace).available()
        if runs and room:
            await self._pending.refresh(runs[:room], deadline_s=PENDING_DEADLINE_S)

    async def _read_one(
        self,
        calls: TemporalCalls,
        run: ClaimedRun,
        known: RunProgress | None,
        deadline: float,
    ) -> _Read:
        if known is not None and known.status != Status.RUNNING:
            return _Read(RunRead(run.run_id, open=False))  # final: nothing to read
        async with self._fetch_slots:
            if time.monotonic() > deadline:
                return _Read(RunRead(run.run_id, read=False))
            try:
                history = await calls.fetch_history(
                    run.workflow_id, run.run_id, known.history_length if known else 0
                )
            except RPCError as err:
                if err.status in _TRANSIENT:
                    raise  # the server, not this run: the whole batch waits for the next pass
                # This run only (say, permission denied): try again later, by staleness,
                # so it never holds up the runs behind it.
                logger.warning(
                    "%s/%s: cannot read its history: %s", calls.namespace, run.workflow_id, err
                )
                retry = datetime.now(UTC) + timedelta(seconds=MAX_REREAD_INTERVAL)
                return _Read(RunRead(run.run_id, next_due=retry))
        now = datetime.now(UTC)
        if history.gone:
            return _Read(RunRead(run.run_id, open=False))
        if history.unchanged:
            start = known.start_time if known is not None else None
            return _Read(RunRead(run.run_id, next_due=next_due(start, now)))
        facts = parse_history(calls.namespace, run.workflow_id, run.run_id, history.events)
        is_open = facts.status == Status.RUNNING
        return _Read(
            RunRead(run.run_id, open=is_open, next_due=next_due(facts.start_time, now)),
            facts,
            new=known is None,
        )

    async def _follow(self, reads: Iterable[_Read]) -> set[str]:
        """Queue the runs that new links point at; return the namespaces queued into.

        Ends never read are read at once. A run just discovered also has the known open
        runs it names read again: a handler's start changes its caller's history (and a
        child's, its parent's).
        """
        ends: dict[str, dict[str, str]] = {}
        asked: dict[str, set[str]] = {}
        for read in reads:
            facts = read.facts
            if facts is None:
                continue
            named = [
                (link.handler_namespace, link.handler_workflow_id, link.handler_run_id)
                for link in facts.links
            ] + [
                (link.caller_namespace, link.caller_workflow_id, link.caller_run_id)
                for link in facts.links
            ]
            if facts.parent_run_id and facts.parent_workflow_id:
                named.append(
                    (
                        facts.parent_namespace or facts.namespace,
                        facts.parent_workflow_id,
                        facts.parent_run_id,
                    )
                )
            for namespace, workflow_id, run_id in named:
                if namespace not in self.connections.configs or not run_id:
                    continue
                if (namespace, run_id) == (facts.namespace, facts.run_id):
                    continue
                ends.setdefault(namespace, {})[run_id] = workflow_id
                if read.new:
                    asked.setdefault(namespace, set()).add(run_id)
        if not ends:
            return set()
        return await asyncio.to_thread(self._queue_ends, ends, asked)

    def _queue_ends(self, ends: dict[str, dict[str, str]], asked: dict[str, set[str]]) -> set[str]:
        """Queue the unread ends, and the open ones a new run names (blocking)."""
        poked: set[str] = set()
        for namespace, runs in ends.items():
            known = self.store.runs_progress(namespace, list(runs))
            wanted = [
                (workflow_id, run_id)
                for run_id, workflow_id in runs.items()
                if run_id not in known
                or (known[run_id].status == Status.RUNNING and run_id in asked.get(namespace, ()))
            ]
            if wanted:
                self.store.enqueue_runs(namespace, wanted, priority=Priority.DISCOVERY)
                poked.add(namespace)
        return poked


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
