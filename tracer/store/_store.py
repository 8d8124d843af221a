"""The store: every write (linker, receiver) and every read (UI, API) as one repository."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

from sqlalchemy import Engine, delete, event, func, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from tracer.db import (
    Call,
    CollectorInstance,
    DatabaseFile,
    Link,
    NamespaceLease,
    NamespaceState,
    NexusEndpointRow,
    RunWait,
    Span,
    StoreProbe,
    WorkflowRun,
    insert_ignoring_duplicates,
)
from tracer.domain import NodeKind
from tracer.query import (
    NamespaceMap,
    Scope,
    SpanInfo,
    TraceFilter,
    TracePage,
    TreeNode,
    Visible,
    build_tree,
    chunks,
    namespace_map,
    search_traces,
    spans_for_node,
    spans_for_tree,
)

from ._facts import RunFacts
from ._pending import OpenRun, in_flight_runs, save_pending, stale_pending_runs
from ._span_namespaces import fill_span_namespaces, with_namespaces
from ._summaries import refresh_summaries
from ._work import WorkQueue, request_in_session

__all__ = [
    "LINKER_STALE_AFTER",
    "SPAN_FILL_BATCH",
    "NamespaceStatus",
    "NexusEndpoint",
    "NodeDetail",
    "Readiness",
    "RunProgress",
    "Store",
    "StoreUnavailableError",
]

LINKER_STALE_AFTER = timedelta(minutes=2)
"""A namespace the linker has not polled successfully for this long is not reachable."""


class StoreUnavailableError(Exception):
    """A write may not survive a restart: the SQLite file this process writes to is no
    longer the file at its path (deleted, moved or replaced)."""


@dataclass(frozen=True)
class Readiness:
    """Whether the collector can do its job, and if not, why.

    Attributes:
        store: Why the store cannot commit a write (``None``: it can).
        database_file: Why the SQLite file written to is not the one a restart would open.
        temporal: Why no linked namespace is reachable (``None`` also when the store has
            no linked namespace at all: a UI over a store nobody links).
    """

    store: str | None = None
    database_file: str | None = None
    temporal: str | None = None

    @property
    def ready(self) -> bool:
        """Whether every check passed."""
        return self.store is None and self.database_file is None and self.temporal is None

    @property
    def failing(self) -> list[str]:
        """The names of the checks that failed."""
        return [
            name
            for name, problem in (
                ("store", self.store),
                ("database_file", self.database_file),
                ("temporal", self.temporal),
            )
            if problem is not None
        ]

    def to_json(self) -> dict[str, Any]:
        """Each check as ``"ok"`` or its problem, and ``ready``."""
        return {
            "ready": self.ready,
            "store": self.store or "ok",
            "database_file": self.database_file or "ok",
            "temporal": self.temporal or "ok",
        }


def _one_line(err: BaseException, limit: int = 300) -> str:
    text_ = " ".join(str(getattr(err, "orig", None) or err).split())
    return f"{type(err).__name__}: {text_[:limit]}"


# A read summarizes at most this many pending runs itself, so every write made before it
# shows; past that (a backlog after an upgrade) it reads what the summaries job has done.
READ_REFRESH_RUNS = 2000

SPAN_FILL_BATCH = 1000
"""Spans without a namespace that one :meth:`Store.fill_span_namespaces` call looks at."""


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass
class _SpanWalk:
    """Where the walk over spans waiting for a namespace stands, in this process."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    cursor: int = 0  # last span id looked at; 0: the walk (re)starts
    # Newest run and call ids when the walk last started: no new ones, nothing to place.
    newest: tuple[int | None, int | None] | None = None


class RunProgress(NamedTuple):
    """How far the linker has read a stored run."""

    status: str
    history_length: int
    start_time: datetime


@dataclass(frozen=True)
class NexusEndpoint:
    """A Nexus endpoint and where it delivers (read from Temporal's operator API)."""

    name: str
    namespace: str
    task_queue: str


@dataclass(frozen=True)
class NodeDetail:
    """One node of a call tree with what its detail panel shows, as a viewer may see it.

    Attributes:
        root: The whole (redacted) tree the node belongs to.
        node: The node, the ``index``-th of the tree in depth-first order.
        parent: The node it hangs off (``None`` for the root).
        spans: Its spans, visible ones only, earliest first.
        endpoints: Known Nexus endpoints; the task queue of one whose namespace the viewer
            may not see is empty.
    """

    root: TreeNode
    node: TreeNode
    parent: TreeNode | None
    spans: list[SpanInfo]
    endpoints: list[NexusEndpoint]


@dataclass(frozen=True)
class NamespaceStatus:
    """The linker's progress and health in one namespace."""

    namespace: str
    status: str
    last_error: str | None
    close_cursor: datetime | None
    start_cursor: datetime | None
    last_poll_at: datetime | None
    runs_linked: int

    @classmethod
    def of(cls, row: NamespaceState) -> NamespaceStatus:
        """The row as a plain value."""
        return cls(**{field.name: getattr(row, field.name) for field in fields(cls)})


class Store(WorkQueue):
    """The SQL store behind an engine (SQLite or PostgreSQL): every write, and every read
    the UI and API make, returning plain values.

    Every read the UI and API make takes the viewer's ``scope`` (a
    :class:`tracer.query.Scope`, the namespaces it may see, or ``None`` for all of them)
    and returns only what that viewer may see: the redaction rule of
    :mod:`tracer.query._visibility`, applied here so no page has to.

    Its methods block on the database: from async code, call them in a worker thread
    (``asyncio.to_thread``).
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.session = sessionmaker(engine, expire_on_commit=False)
        # One summarizer per process at a time; across processes, SKIP LOCKED shares.
        self._summarizing = threading.Lock()
        self._span_walk = _SpanWalk()
        self.file = DatabaseFile.of(engine)
        if self.file is not None:
            event.listen(engine, "do_connect", self._refuse_another_file)

    def _refuse_another_file(self, *_: Any) -> None:
        # Opening the path now would create (or open) a database a restart would not
        # find our writes in: fail the connection instead.
        assert self.file is not None
        problem = self.file.problem()
        if problem is not None:
            raise sqlite3.OperationalError(problem)

    def check_file(self) -> None:
        """Raise :class:`StoreUnavailableError` when the SQLite file written to is no
        longer the file at its path (nothing to check on PostgreSQL)."""
        problem = self.file.problem() if self.file is not None else None
        if problem is not None:
            raise StoreUnavailableError(problem)

    def ping(self) -> None:
        """Raise unless the database answers a query."""
        with self.engine.connect() as connection:
            connection.execute(text("SELECT 1"))

    def probe_write(self) -> None:
        """Commit a write (the readiness probe row), as a new connection would.

        Raises:
            StoreUnavailableError: The SQLite file is not the one at its path.
            Exception: Whatever the database raised.
        """
        self.check_file()
        if self.file is not None:
            self.file.probe_write()
            self.check_file()
            return
        now = _now()
        with self.session.begin() as session:
            updated = session.execute(
                update(StoreProbe).where(StoreProbe.name == "readiness").values(written_at=now)
            )
            if not getattr(updated, "rowcount", 0):
                insert_ignoring_duplicates(
                    session, StoreProbe, [{"name": "readiness", "written_at": now}]
                )

    def readiness(self, *, stale_after: timedelta = LINKER_STALE_AFTER) -> Readiness:
        """Whether the store commits, its file is the one a restart opens, and some linked
        namespace was reached lately (see :class:`Readiness`)."""
        file_problem = self.file.problem() if self.file is not None else None
        store_problem = None
        try:
            self.probe_write()
        except StoreUnavailableError:
            pass  # reported as the file's problem
        except Exception as err:  # any failure to commit means "not ready"
            store_problem = f"cannot commit a write: {_one_line(err)}"
        temporal = None
        try:
            states = self.namespace_states()
        except Exception as err:
            states = []
            store_problem = store_problem or f"cannot read: {_one_line(err)}"
        now = _now()
        fresh = [
            state
            for state in states
            if state.status == "ok"
            and state.last_poll_at is not None
            and now - state.last_poll_at < stale_after
        ]
        if states and not fresh:
            # Which namespace failed how is in each namespace's state, for who may see it.
            minutes = stale_after.total_seconds() / 60
            temporal = (
                f"no linked namespace is reachable: none of {len(states)} was polled "
                f"successfully in the last {minutes:g} min"
            )
        return Readiness(store_problem, file_problem, temporal)

    # --- reads for the UI and API --------------------------------------------------

    def tree(
        self,
        namespace: str,
        workflow_id: str,
        run_id: str | None = None,
        *,
        scope: Visible,
        kind: str = NodeKind.WORKFLOW,
    ) -> TreeNode | None:
        """The whole call tree holding a workflow (its latest run, or ``run_id``), as
        ``scope`` may see it; ``None`` when there is none, or when the workflow's own
        namespace is hidden."""
        seen = Scope.of(scope)
        if not seen.sees(namespace):
            return None
        with self.session() as session:
            tree = build_tree(session, namespace, workflow_id, run_id, kind)
            return seen.tree(tree) if tree is not None else None

    def tree_with_spans(
        self,
        namespace: str,
        workflow_id: str,
        run_id: str | None = None,
        *,
        scope: Visible,
        kind: str = NodeKind.WORKFLOW,
    ) -> tuple[TreeNode, list[SpanInfo]] | None:
        """The call tree and the spans that belong to it, read in one session, as
        ``scope`` may see them (see :meth:`tree`)."""
        seen = Scope.of(scope)
        if not seen.sees(namespace):
            return None
        with self.session() as session:
            tree = build_tree(session, namespace, workflow_id, run_id, kind)
            if tree is None:
                return None
            return seen.tree(tree), seen.spans(spans_for_tree(session, tree))

    def tree_node(
        self,
        namespace: str,
        workflow_id: str,
        run_id: str | None = None,
        *,
        index: int,
        scope: Visible,
        kind: str = NodeKind.WORKFLOW,
    ) -> NodeDetail | None:
        """The ``index``-th node (depth first) of the tree holding a workflow, with its
        spans, as ``scope`` may see it: a hidden node keeps its structure and has no span.
        ``None`` when there is no such tree or node (see :meth:`tree`)."""
        seen = Scope.of(scope)
        if not seen.sees(namespace) or index < 0:
            return None
        with self.session() as session:
            tree = build_tree(session, namespace, workflow_id, run_id, kind)
            if tree is None:
                return None
            root = seen.tree(tree)
            found = _nth(root, index)
            if found is None:
                return None
            node, parent = found
            spans: list[SpanInfo] = []
            if seen.sees(node.namespace):
                spans = seen.spans(spans_for_node(session, node, parent))
            endpoints = [
                endpoint if seen.sees(endpoint.namespace) else replace(endpoint, task_queue="")
                for endpoint in self._endpoints(session)
            ]
            return NodeDetail(root, node, parent, spans, endpoints)

    def search(self, criteria: TraceFilter, *, scope: Visible) -> TracePage:
        """A page of call trees matching ``criteria``, from summaries that include every
        write made before the call, as ``scope`` may see them: only trees that touch a
        visible namespace, ids and types matched in visible namespaces only."""
        seen = Scope.of(scope)
        self.refresh_summaries(max_runs=READ_REFRESH_RUNS)
        visible = criteria.visible_namespaces
        if seen.namespaces is not None:
            visible = seen.namespaces if visible is None else visible & seen.namespaces
        scoped = replace(criteria, visible_namespaces=visible)
        with self.session() as session:
            page = search_traces(session, scoped)
        return replace(page, rows=[seen.summary(row) for row in page.rows])

    def refresh_summaries(self, *, max_runs: int | None = None) -> int:
        """Bring tree summaries up to date with every run written so far; return how many
        dirty runs were summarized. ``max_runs`` bounds the work of one call."""
        done = 0
        with self._summarizing:
            while max_runs is None or done < max_runs:
                with self.session.begin() as session:
                    taken = refresh_summaries(session)
                done += taken
                if taken == 0:
                    break
        return done

    def tree_entry(self, root_pk: int, *, scope: Visible) -> tuple[str, str, str] | None:
        """``(namespace, workflow_id, run_id)`` of a run to open a search row's tree at:
        its root, or for a viewer who cannot see the root's namespace, the first run of
        the tree in a namespace it sees (``None`` when there is none)."""
        visible = Scope.of(scope).namespaces
        with self.session() as session:
            query = select(WorkflowRun.namespace, WorkflowRun.workflow_id, WorkflowRun.run_id)
            root = session.execute(query.where(WorkflowRun.id == root_pk)).first()
            if root is not None and (visible is None or root[0] in visible):
                return (root[0], root[1], root[2])
            if visible is None:
                return None
            member = session.execute(
                query.where(WorkflowRun.root_pk == root_pk, WorkflowRun.namespace.in_(visible))
                .order_by(WorkflowRun.start_time)
                .limit(1)
            ).first()
            return (member[0], member[1], member[2]) if member is not None else None

    def namespace_map(
        self, since: datetime | None = None, until: datetime | None = None, *, scope: Visible
    ) -> NamespaceMap:
        """Calls between namespaces in the window, with every linked namespace as a node,
        as ``scope`` may see them: calls between two hidden namespaces are left out, and a
        hidden namespace the collector does not link is named ``(hidden)``."""
        seen = Scope.of(scope)
        self.refresh_summaries(max_runs=READ_REFRESH_RUNS)
        with self.session() as session:
            linked = frozenset(session.scalars(select(NamespaceState.namespace)).all())
            found = namespace_map(
                session,
                since=since,
                until=until,
                namespaces=[name for name in linked if seen.sees(name)],
                edge_view=lambda caller, callee: seen.map_edge(caller, callee, linked),
            )
        return found

    def linker_status(self, *, scope: Visible) -> list[NamespaceStatus]:
        """The linker's state in each namespace ``scope`` may see, by name."""
        seen = Scope.of(scope)
        return [state for state in self.namespace_states() if seen.sees(state.namespace)]

    def endpoints(self) -> list[NexusEndpoint]:
        """The known Nexus endpoints, by name (the linker's and the operator's view)."""
        with self.session() as session:
            return self._endpoints(session)

    @staticmethod
    def _endpoints(session: Session) -> list[NexusEndpoint]:
        rows = session.execute(
            select(
                NexusEndpointRow.name,
                NexusEndpointRow.target_namespace,
                NexusEndpointRow.target_task_queue,
            ).order_by(NexusEndpointRow.name)
        )
        return [NexusEndpoint(name, namespace, queue) for name, namespace, queue in rows]

    def lease_owners(self) -> dict[str, str]:
        """Namespace (or other leased work) -> description of the live collector doing it."""
        now = _now()
        with self.session() as session:
            rows = session.execute(
                select(NamespaceLease.namespace, CollectorInstance.description)
                .join(CollectorInstance, CollectorInstance.id == NamespaceLease.owner)
                .where(NamespaceLease.expires_at > now)
            )
            return {namespace: description for namespace, description in rows}

    # --- linker writes -------------------------------------------------------------

    def save_run(self, facts: RunFacts) -> None:
        """Store one run's facts: the run and its calls are upserted, links only added."""
        self.save_runs([facts])

    def save_runs(self, runs: Sequence[RunFacts]) -> None:
        """Store several runs' facts in one transaction (see :meth:`save_run`)."""
        try:
            self._save_runs(runs)
        except IntegrityError:
            # Two readers of the same run raced to insert it; the second one now updates.
            self._save_runs(runs)

    def _save_runs(self, runs: Sequence[RunFacts]) -> None:
        now = _now()
        self.check_file()
        with self.session.begin() as session:
            _save_all(session, runs, now)
        self.check_file()

    def save_pending(
        self, run: OpenRun, calls: Mapping[str, dict[str, Any]], read_at: datetime
    ) -> None:
        """Store what Temporal said of an open run's pending calls (``calls`` keyed
        ``nexus:<scheduled event id>`` / ``activity:<activity id>``), replacing the last."""
        self.check_file()
        with self.session.begin() as session:
            save_pending(session, run, calls, read_at)

    def in_flight_runs(self, namespace: str, run_ids: Sequence[str]) -> list[OpenRun]:
        """Those of ``run_ids`` that are open with a running activity or Nexus call."""
        with self.session() as session:
            return in_flight_runs(session, namespace, run_ids)

    def stale_pending_runs(
        self,
        namespace: str,
        workflow_id: str,
        run_id: str | None = None,
        *,
        max_age: timedelta,
        limit: int,
        kind: str = NodeKind.WORKFLOW,
    ) -> list[OpenRun]:
        """Open runs in the tree holding a workflow whose running calls' pending state is
        older than ``max_age`` (or unknown), oldest first: what a tree request describes
        before it answers. For the collector's own use: it names runs whatever the viewer."""
        with self.session() as session:
            return stale_pending_runs(
                session,
                namespace,
                workflow_id,
                run_id,
                read_before=_now() - max_age,
                limit=limit,
                kind=kind,
            )

    def runs_progress(self, namespace: str, run_ids: Sequence[str]) -> dict[str, RunProgress]:
        """What is stored of those of ``run_ids`` that are stored, by run id."""
        found: dict[str, RunProgress] = {}
        with self.session() as session:
            for part in chunks(sorted(set(run_ids))):
                rows = session.execute(
                    select(
                        WorkflowRun.run_id,
                        WorkflowRun.status,
                        WorkflowRun.history_length,
                        WorkflowRun.start_time,
                    ).where(WorkflowRun.namespace == namespace, WorkflowRun.run_id.in_(part))
                )
                found.update((row[0], RunProgress(row[1], row[2], row[3])) for row in rows)
        return found

    def save_endpoints(self, endpoints: Sequence[tuple[str, str, str]]) -> None:
        """Replace the known Nexus endpoints with ``(name, namespace, task_queue)`` rows."""
        now = _now()
        rows = [
            {"name": name, "target_namespace": ns, "target_task_queue": queue, "updated_at": now}
            for name, ns, queue in endpoints
        ]
        with self.session.begin() as session:
            before = {
                name: (namespace, queue)
                for name, namespace, queue in session.execute(
                    select(
                        NexusEndpointRow.name,
                        NexusEndpointRow.target_namespace,
                        NexusEndpointRow.target_task_queue,
                    )
                )
            }
            session.execute(delete(NexusEndpointRow))
            # Another collector may be writing the same rows right now.
            insert_ignoring_duplicates(session, NexusEndpointRow, rows)
            changed = sorted(
                name for name, ns, queue in endpoints if before.get(name) != (ns, queue)
            )
            # Trees summarized while an endpoint was unknown named its calls' far side
            # after the endpoint: summarize them again.
            for part in chunks(changed):
                session.execute(
                    update(WorkflowRun)
                    .where(WorkflowRun.id.in_(select(Call.run_pk).where(Call.endpoint.in_(part))))
                    .values(summary_dirty=True)
                )

    def save_spans(self, rows: Sequence[dict[str, Any]]) -> None:
        """Insert span rows in one transaction; a span already stored is skipped.

        Args:
            rows: Rows of the ``spans`` table, as the OTLP decoder makes them.

        Raises:
            StoreUnavailableError: The SQLite file written to is no longer the file at its
                path, before or after the commit: a restart would not find these spans.
        """
        if not rows:
            return
        self.check_file()
        with self.session.begin() as session:
            # Spans of a run already linked take its namespace now (one query per call).
            insert_ignoring_duplicates(session, Span, with_namespaces(session, rows))
            # A span of an open run is evidence that it changed: the linker reads it soon.
            request_in_session(session, {row["run_id"] for row in rows if row.get("run_id")})
        # Checked after the commit too: the folder may have gone while it was written.
        self.check_file()

    def fill_span_namespaces(self, *, limit: int = SPAN_FILL_BATCH) -> int:
        """Give a namespace to spans stored without one whose run (or, for a sync Nexus
        handler, whose call) the linker has stored since; return how many got one.

        Each call looks at up to ``limit`` waiting spans, resuming where the last call
        stopped. A walk that reached the end starts over only once new runs or calls were
        stored: until then, nothing could place the spans still waiting.
        """
        walk = self._span_walk
        with walk.lock, self.session.begin() as session:
            if walk.cursor == 0:
                newest = (
                    session.scalar(select(func.max(WorkflowRun.id))),
                    session.scalar(select(func.max(Call.id))),
                )
                if newest == walk.newest:
                    return 0
                walk.newest = newest
            last, seen, filled = fill_span_namespaces(session, walk.cursor, limit)
            walk.cursor = last if seen == limit else 0
            return filled

    # --- namespace state -----------------------------------------------------------

    def namespace_state(self, namespace: str) -> NamespaceStatus | None:
        """The linker's stored progress in ``namespace``."""
        with self.session() as session:
            row = session.get(NamespaceState, namespace)
            return NamespaceStatus.of(row) if row is not None else None

    def namespace_states(self) -> list[NamespaceStatus]:
        """Every namespace the linker has worked on, by name."""
        with self.session() as session:
            rows = session.scalars(select(NamespaceState).order_by(NamespaceState.namespace))
            return [NamespaceStatus.of(row) for row in rows]

    def set_namespace_status(
        self,
        namespace: str,
        status: str,
        *,
        error: str | None = None,
        close_cursor: datetime | None = None,
        start_cursor: datetime | None = None,
        runs_linked: int = 0,
    ) -> None:
        """Record a poll of ``namespace``: its status, error, cursors and runs read.

        A cursor only moves forward: discovery never lists a time range twice for it.
        """
        now = _now()
        with self.session.begin() as session:
            state = session.get(NamespaceState, namespace)
            if state is None:
                state = NamespaceState(namespace=namespace, status=status, runs_linked=0)
                session.add(state)
            state.status = status
            state.last_error = error
            state.last_poll_at = now
            if close_cursor is not None and (
                state.close_cursor is None or close_cursor > state.close_cursor
            ):
                state.close_cursor = close_cursor
            if start_cursor is not None and (
                state.start_cursor is None or start_cursor > state.start_cursor
            ):
                state.start_cursor = start_cursor
            state.runs_linked = (state.runs_linked or 0) + runs_linked

    def add_runs_linked(self, namespace: str, runs: int) -> None:
        """Count ``runs`` more histories read in ``namespace`` (by any collector)."""
        if runs <= 0:
            return
        with self.session.begin() as session:
            session.execute(
                update(NamespaceState)
                .where(NamespaceState.namespace == namespace)
                .values(runs_linked=NamespaceState.runs_linked + runs)
            )

    def ensure_namespace_states(self, namespaces: Iterable[str]) -> None:
        """Give every configured namespace a state row ("starting" until first polled).

        Existing rows are left alone: another collector on this database may be linking.
        """
        with self.session.begin() as session:
            insert_ignoring_duplicates(
                session,
                NamespaceState,
                [{"namespace": ns, "status": "starting", "runs_linked": 0} for ns in namespaces],
            )


def _run_values(facts: RunFacts, now: datetime) -> dict[str, Any]:
    return {
        "namespace": facts.namespace,
        "workflow_id": facts.workflow_id,
        "run_id": facts.run_id,
        "workflow_type": facts.workflow_type,
        "task_queue": facts.task_queue,
        "status": facts.status,
        "start_time": facts.start_time,
        "close_time": facts.close_time,
        "error_type": facts.error_type,
        "error_message": facts.error_message,
        "error_kind": facts.error_kind,
        "parent_namespace": facts.parent_namespace,
        "parent_workflow_id": facts.parent_workflow_id,
        "parent_run_id": facts.parent_run_id,
        "parent_event_id": facts.parent_event_id,
        "history_length": facts.history_length,
        "kind": facts.kind,
        "updated_at": now,
        "summary_dirty": True,
    }


def _save_all(session: Session, runs: Sequence[RunFacts], now: datetime) -> None:
    """Upsert runs and their calls and add their links, inside ``session``'s transaction,
    with a handful of queries for the whole batch."""
    stored: dict[tuple[str, str], WorkflowRun] = {}
    for run_ids in chunks(sorted({facts.run_id for facts in runs})):
        for found in session.scalars(select(WorkflowRun).where(WorkflowRun.run_id.in_(run_ids))):
            stored[(found.namespace, found.run_id)] = found
    kept: list[tuple[RunFacts, WorkflowRun]] = []
    for facts in runs:
        run = stored.get((facts.namespace, facts.run_id))
        values = _run_values(facts, now)
        if run is None:
            run = stored[(facts.namespace, facts.run_id)] = WorkflowRun(**values)
            session.add(run)
        elif facts.history_length >= run.history_length:
            for key, value in values.items():
                setattr(run, key, value)
        else:
            continue  # an older read of the history than the one stored: keep ours
        kept.append((facts, run))
    session.flush()
    existing: dict[tuple[int, int], Call] = {}
    for pks in chunks(sorted({run.id for _, run in kept})):
        for stored_call in session.scalars(select(Call).where(Call.run_pk.in_(pks))):
            existing[(stored_call.run_pk, stored_call.event_id)] = stored_call
    links: list[dict[str, Any]] = []
    for facts, run in kept:
        for call_facts in facts.calls:
            values = asdict(call_facts)
            call = existing.get((run.id, call_facts.event_id))
            if call is None:
                session.add(Call(run_pk=run.id, **values))
            else:
                for key, value in values.items():
                    setattr(call, key, value)
        links.extend({**asdict(link), "created_at": now} for link in facts.links)
    insert_ignoring_duplicates(session, Link, links)
    # A run's waits are rewritten with each read of its history (a timer ends later).
    for pks in chunks(sorted({run.id for _, run in kept})):
        session.execute(delete(RunWait).where(RunWait.run_pk.in_(pks)))
    waits = [{"run_pk": run.id, **asdict(wait)} for facts, run in kept for wait in facts.waits]
    if waits:
        insert_ignoring_duplicates(session, RunWait, waits)


def _nth(root: TreeNode, index: int) -> tuple[TreeNode, TreeNode | None] | None:
    """The ``index``-th node of the tree in depth-first order, and its parent."""
    stack: list[tuple[TreeNode, TreeNode | None]] = [(root, None)]
    seen = 0
    while stack:
        node, parent = stack.pop()
        if seen == index:
            return node, parent
        seen += 1
        stack.extend((child, node) for child in reversed(node.children))
    return None
