"""The call graph: who called a run, which run roots its tree, and which runs a tree holds.

This module is the only place these rules live; the tree builder, search, retention and
export all ask it. The rules:

- An edge that *starts* a handler (:data:`~tracer.domain.STARTING_LINKS`: Nexus, activity
  wrapper, child) makes the caller the handler's parent. Signals and updates never do.
- A link names its handler by run id, or, for an operation-token link, by workflow id
  alone: the handler is then that workflow's first run that started at or after the call.
- A run may be named by several records. The caller it hangs under is the one with the
  best :func:`precedence`: caller's history > handler's history (callback links, the
  parent named at start) > operation token > signed claim > unsigned claim. A caller that
  is not stored does not count.
- A run with no stored caller is a root. A tree's members are what walking down from the
  root along those preferred edges reaches, so ``root_of(r) == x`` exactly when ``r`` is a
  member of ``x``'s tree.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import ColumnElement, and_, exists, or_, select
from sqlalchemy.orm import Session, aliased

from tracer.db import Call, Link, WorkflowRun
from tracer.domain import STARTING_LINKS, LinkKind, LinkSource, NodeKind

__all__ = [
    "MAX_DEPTH",
    "CallGraph",
    "Caller",
    "chunks",
    "link_matches_call",
    "precedence",
    "root_condition",
]

# Guards against pathological data (a cycle of links, a runaway depth).
MAX_DEPTH = 64
_CHUNK = 500
_T = TypeVar("_T")

_SOURCE_RANK: dict[str, int] = {
    LinkSource.CALLER_HISTORY: 0,
    LinkSource.HANDLER_HISTORY: 1,
    LinkSource.OPERATION_TOKEN: 2,
}


def precedence(source: str, verified: bool) -> int:
    """Rank of a record naming a caller; lower wins.

    History links (0, 1) beat the operation token (2), which beats a signed claim (3),
    which beats an unsigned one (4).
    """
    rank = _SOURCE_RANK.get(source)
    if rank is not None:
        return rank
    return 3 if verified else 4


def chunks(items: Sequence[_T], size: int = _CHUNK) -> Iterator[Sequence[_T]]:
    """``items`` in slices short enough for one ``IN (...)`` clause."""
    for index in range(0, len(items), size):
        yield items[index : index + size]


def _handler_end(link: Any, run: Any) -> ColumnElement[bool]:
    """SQL: ``link`` is a starting edge whose handler end is ``run`` (entities or aliases)."""
    return and_(
        link.handler_namespace == run.namespace,
        link.kind.in_(STARTING_LINKS),
        or_(
            link.handler_run_id == run.run_id,
            and_(link.handler_run_id == "", link.handler_workflow_id == run.workflow_id),
        ),
    )


def root_condition(run: Any = WorkflowRun) -> ColumnElement[bool]:
    """SQL: ``run`` has no stored caller and no stored parent, so it roots its tree.

    An operation-token link names a workflow, not a run: it calls ``run`` only when
    ``run`` is that workflow's first run to start at or after the call (as
    :meth:`CallGraph.pick_handler` decides).
    """
    caller = aliased(WorkflowRun)
    parent = aliased(WorkflowRun)
    call = aliased(Call)
    earlier = aliased(WorkflowRun)
    stored_caller = and_(
        caller.namespace == Link.caller_namespace, caller.run_id == Link.caller_run_id
    )
    starting = and_(Link.handler_namespace == run.namespace, Link.kind.in_(STARTING_LINKS))
    by_run = exists(
        select(Link.id)
        .join(caller, stored_caller)
        .where(starting, Link.handler_run_id == run.run_id)
    )
    by_token = exists(
        select(Link.id)
        .join(caller, stored_caller)
        .join(call, and_(call.run_pk == caller.id, call.event_id == Link.caller_event_id))
        .where(
            starting,
            Link.handler_run_id == "",
            Link.handler_workflow_id == run.workflow_id,
            run.start_time >= call.start_time,
            ~exists(
                select(earlier.id)
                .where(
                    earlier.namespace == run.namespace,
                    earlier.workflow_id == run.workflow_id,
                    earlier.start_time >= call.start_time,
                    earlier.start_time < run.start_time,
                )
                # Two levels down: name the outer tables it refers to, or they'd be joined.
                .correlate_except(earlier)
            ),
        )
    )
    has_parent = exists(
        select(parent.id).where(
            parent.namespace == run.parent_namespace, parent.run_id == run.parent_run_id
        )
    )
    return and_(~by_run, ~by_token, ~has_parent)


def link_matches_call(link: Link, call: Call) -> bool:
    """Whether ``link`` was made by ``call`` (by event id, request id or activity id)."""
    if link.caller_event_id and link.caller_event_id == call.event_id:
        return True
    if link.caller_request_id and link.caller_request_id == call.request_id:
        return True
    return bool(link.caller_activity_id and link.caller_activity_id == call.activity_id)


@dataclass(frozen=True)
class Caller:
    """A stored run that called a handler run, and how the call is recorded.

    ``link`` is ``None`` when only the handler's own start event names its parent (a
    same-namespace child); ``event_id`` then is the parent's initiating event.
    """

    run: WorkflowRun
    kind: LinkKind
    source: LinkSource
    verified: bool
    event_id: int = 0
    request_id: str = ""
    activity_id: str = ""
    link: Link | None = None

    @property
    def rank(self) -> int:
        """This record's :func:`precedence`."""
        return precedence(self.source, self.verified)

    def call_key(self) -> tuple[str, str, int | str]:
        """What names the call on the caller's side: one call, whichever record saw it."""
        identity: int | str = self.event_id or self.request_id or self.activity_id
        return (self.run.namespace, self.run.run_id, identity)


class CallGraph:
    """The graph rules over one database session, with the runs it loaded cached."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self._by_key: dict[tuple[str, str], WorkflowRun | None] = {}

    # --- runs ----------------------------------------------------------------------

    def run(self, namespace: str, run_id: str) -> WorkflowRun | None:
        """The stored run, or ``None``."""
        key = (namespace, run_id)
        if key not in self._by_key:
            self._load_runs([key])
        return self._by_key[key]

    def _load_runs(self, keys: Iterable[tuple[str, str]]) -> None:
        wanted = sorted({key for key in keys if key not in self._by_key})
        for chunk in chunks(sorted({run_id for _, run_id in wanted})):
            for run in self.session.scalars(
                select(WorkflowRun).where(WorkflowRun.run_id.in_(chunk))
            ):
                self._by_key[(run.namespace, run.run_id)] = run
        for key in wanted:
            self._by_key.setdefault(key, None)

    def latest_run(
        self,
        namespace: str,
        workflow_id: str,
        run_id: str | None = None,
        kind: str = NodeKind.WORKFLOW,
    ) -> WorkflowRun | None:
        """The given run, or the latest run of a workflow id (of a standalone operation's
        id, with ``kind`` ``nexus_operation``: the two are separate id spaces)."""
        query = select(WorkflowRun).where(
            WorkflowRun.namespace == namespace,
            WorkflowRun.workflow_id == workflow_id,
            WorkflowRun.kind == kind,
        )
        if run_id:
            query = query.where(WorkflowRun.run_id == run_id)
        return self.session.scalars(query.order_by(WorkflowRun.start_time.desc()).limit(1)).first()

    # --- upwards: callers and roots ------------------------------------------------

    def callers(self, runs: Sequence[WorkflowRun]) -> dict[int, list[Caller]]:
        """Stored callers of each run (by primary key), best first, one per call."""
        found: dict[int, list[Caller]] = defaultdict(list)
        if not runs:
            return found
        by_run = {(r.namespace, r.run_id): r for r in runs}
        wanted = {run.id for run in runs}
        links: list[Link] = []
        for chunk in chunks(runs):
            links.extend(
                self.session.scalars(
                    select(Link).where(
                        Link.kind.in_(STARTING_LINKS),
                        or_(
                            Link.handler_run_id.in_([r.run_id for r in chunk]),
                            and_(
                                Link.handler_run_id == "",
                                Link.handler_workflow_id.in_([r.workflow_id for r in chunk]),
                            ),
                        ),
                    )
                )
            )
        self._load_runs((link.caller_namespace, link.caller_run_id) for link in links)
        self._load_runs(
            (run.parent_namespace, run.parent_run_id)
            for run in runs
            if run.parent_namespace and run.parent_run_id
        )
        # Operation-token links name a workflow; only the run they started counts.
        resolved = self.resolve(link for link in links if not link.handler_run_id)
        for link in links:
            caller = self._by_key.get((link.caller_namespace, link.caller_run_id))
            if caller is None:
                continue
            if link.handler_run_id:
                handler = by_run.get((link.handler_namespace, link.handler_run_id))
            else:
                handler = resolved.get(link.id)
                if handler is not None and handler.id not in wanted:
                    handler = None
            targets = [handler] if handler is not None else []
            for target in targets:
                found[target.id].append(
                    Caller(
                        run=caller,
                        kind=LinkKind(link.kind),
                        source=LinkSource(link.source),
                        verified=link.verified,
                        event_id=link.caller_event_id,
                        request_id=link.caller_request_id,
                        activity_id=link.caller_activity_id,
                        link=link,
                    )
                )
        for run in runs:
            if run.parent_namespace and run.parent_run_id:
                parent = self._by_key.get((run.parent_namespace, run.parent_run_id))
                if parent is not None:
                    found[run.id].append(
                        Caller(
                            run=parent,
                            kind=LinkKind.CHILD,
                            source=LinkSource.HANDLER_HISTORY,
                            verified=True,
                            event_id=run.parent_event_id or 0,
                        )
                    )
        starts = self._caller_call_starts([c for callers in found.values() for c in callers])
        return {pk: _best_per_call(callers, starts) for pk, callers in found.items()}

    def _caller_call_starts(self, callers: Sequence[Caller]) -> dict[tuple[int, int], Any]:
        """When each caller's call started, by (caller run pk, event id)."""
        wanted = {(c.run.id, c.event_id) for c in callers if c.event_id}
        starts: dict[tuple[int, int], Any] = {}
        for chunk in chunks(sorted({pk for pk, _ in wanted})):
            for run_pk, event_id, start in self.session.execute(
                select(Call.run_pk, Call.event_id, Call.start_time).where(Call.run_pk.in_(chunk))
            ):
                if (run_pk, event_id) in wanted:
                    starts[(run_pk, event_id)] = start
        return starts

    def caller_of(self, run: WorkflowRun) -> Caller | None:
        """The caller ``run`` hangs under, or ``None`` for a root."""
        callers = self.callers([run]).get(run.id)
        return callers[0] if callers else None

    def root_of(self, run: WorkflowRun) -> WorkflowRun:
        """The root of the tree that holds ``run``."""
        seen = {run.id}
        for _ in range(MAX_DEPTH):
            caller = self.caller_of(run)
            if caller is None or caller.run.id in seen:
                break
            seen.add(caller.run.id)
            run = caller.run
        return run

    def roots_of(self, runs: Sequence[WorkflowRun]) -> set[int]:
        """Primary keys of the roots of the trees that hold ``runs``, climbing in batches."""
        roots: set[int] = set()
        seen: set[int] = set()
        frontier = list({run.id: run for run in runs}.values())
        for _ in range(MAX_DEPTH):
            if not frontier:
                break
            seen.update(run.id for run in frontier)
            callers = self.callers(frontier)
            next_frontier: dict[int, WorkflowRun] = {}
            for run in frontier:
                best = callers.get(run.id)
                if not best:
                    roots.add(run.id)
                elif best[0].run.id not in seen:
                    next_frontier[best[0].run.id] = best[0].run
            frontier = list(next_frontier.values())
        return roots

    # --- downwards: handlers and members -------------------------------------------

    def outgoing(self, runs: Sequence[WorkflowRun]) -> dict[tuple[str, str], list[Link]]:
        """Every stored link whose caller end is one of ``runs``, by (namespace, run id)."""
        found: dict[tuple[str, str], list[Link]] = defaultdict(list)
        for chunk in chunks(sorted({run.run_id for run in runs})):
            for link in self.session.scalars(select(Link).where(Link.caller_run_id.in_(chunk))):
                found[(link.caller_namespace, link.caller_run_id)].append(link)
        return found

    def handlers(self, links: Iterable[Link]) -> dict[tuple[str, str], list[WorkflowRun]]:
        """Runs at the handler end of ``links``: by (namespace, run id), and by (namespace,
        ``"wid:" + workflow id``) for operation-token links that name no run."""
        links = list(links)
        by_run = sorted({link.handler_run_id for link in links if link.handler_run_id})
        by_workflow = sorted(
            {link.handler_workflow_id for link in links if not link.handler_run_id}
        )
        found: dict[tuple[str, str], list[WorkflowRun]] = defaultdict(list)
        for chunk in chunks(by_run):
            for run in self.session.scalars(
                select(WorkflowRun).where(WorkflowRun.run_id.in_(chunk))
            ):
                self._by_key[(run.namespace, run.run_id)] = run
                found[(run.namespace, run.run_id)].append(run)
        for chunk in chunks(by_workflow):
            for run in self.session.scalars(
                select(WorkflowRun)
                .where(WorkflowRun.workflow_id.in_(chunk))
                .order_by(WorkflowRun.start_time)
            ):
                found[(run.namespace, "wid:" + run.workflow_id)].append(run)
        return found

    @staticmethod
    def pick_handler(
        handlers: dict[tuple[str, str], list[WorkflowRun]], link: Link, call_start: Any
    ) -> WorkflowRun | None:
        """The run ``link`` started: named by run id, or for an operation-token link the
        workflow's first run that started at or after the call."""
        if link.handler_run_id:
            runs = handlers.get((link.handler_namespace, link.handler_run_id), [])
            return runs[0] if runs else None
        for run in handlers.get((link.handler_namespace, "wid:" + link.handler_workflow_id), []):
            if call_start is None or run.start_time >= call_start:
                return run
        return None

    def resolve(self, links: Iterable[Link]) -> dict[int, WorkflowRun]:
        """The handler run of each starting link (by link id), where it is stored."""
        links = list(links)
        if not links:
            return {}
        handlers = self.handlers(links)
        starts = self._call_starts([link for link in links if not link.handler_run_id])
        resolved: dict[int, WorkflowRun] = {}
        for link in links:
            handler = self.pick_handler(handlers, link, starts.get(link.id))
            if handler is not None:
                resolved[link.id] = handler
        return resolved

    def _call_starts(self, links: Sequence[Link]) -> dict[int, Any]:
        """When the call behind each link started (by link id), from the caller's history."""
        if not links:
            return {}
        self._load_runs((link.caller_namespace, link.caller_run_id) for link in links)
        callers = {
            link.id: run
            for link in links
            if (run := self._by_key.get((link.caller_namespace, link.caller_run_id)))
        }
        pks = sorted({run.id for run in callers.values()})
        starts: dict[tuple[int, int], Any] = {}
        for chunk in chunks(pks):
            for run_pk, event_id, start in self.session.execute(
                select(Call.run_pk, Call.event_id, Call.start_time).where(Call.run_pk.in_(chunk))
            ):
                starts[(run_pk, event_id)] = start
        return {
            link.id: starts.get((callers[link.id].id, link.caller_event_id))
            for link in links
            if link.id in callers
        }

    def children(self, runs: Sequence[WorkflowRun]) -> dict[int, list[tuple[WorkflowRun, Caller]]]:
        """The runs each of ``runs`` started that hang under it (it is their best caller)."""
        parents = {run.id for run in runs}
        outgoing = self.outgoing(runs)
        starting = [
            link for links in outgoing.values() for link in links if link.kind in STARTING_LINKS
        ]
        candidates = {run.id: run for run in self.resolve(starting).values()}
        # Same-namespace children that only their own start event ties to the parent.
        for chunk in chunks(sorted({run.run_id for run in runs})):
            for child in self.session.scalars(
                select(WorkflowRun).where(WorkflowRun.parent_run_id.in_(chunk))
            ):
                candidates.setdefault(child.id, child)
        best = self.callers(list(candidates.values()))
        found: dict[int, list[tuple[WorkflowRun, Caller]]] = defaultdict(list)
        for pk, handler in candidates.items():
            callers = best.get(pk)
            if callers and callers[0].run.id in parents:
                found[callers[0].run.id].append((handler, callers[0]))
        return found

    def members(self, root: WorkflowRun) -> list[WorkflowRun]:
        """Every run of the tree rooted at ``root``, the root first."""
        members = {root.id: root}
        level = [root]
        for _ in range(MAX_DEPTH):
            if not level:
                break
            below = self.children(level)
            level = [
                child for found in below.values() for child, _ in found if child.id not in members
            ]
            members.update((run.id, run) for run in level)
        return list(members.values())


def _best_per_call(callers: list[Caller], starts: dict[tuple[int, int], Any]) -> list[Caller]:
    """Callers ordered by precedence, each call kept once (two histories often record one
    edge). Between records of equal rank, the call made first wins: a handler two callers
    share (the second attached to it) hangs under the one that started it."""

    def order(caller: Caller) -> tuple[int, datetime, int]:
        start = starts.get((caller.run.id, caller.event_id)) or caller.run.start_time
        return (caller.rank, start, caller.link.id if caller.link is not None else 0)

    ordered = sorted(callers, key=order)
    seen_calls: set[tuple[str, str, int | str]] = set()
    seen_requests: set[str] = set()
    unique: list[Caller] = []
    for caller in ordered:
        key = caller.call_key()
        if key in seen_calls or (caller.request_id and caller.request_id in seen_requests):
            continue
        seen_calls.add(key)
        if caller.request_id:
            seen_requests.add(caller.request_id)
        unique.append(caller)
    return unique
