"""Writes and reads of the store shared by the linker, the receiver and the API."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, Table, delete, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from ._history import RunFacts
from ._models import Base, Call, Link, NamespaceState, NexusEndpointRow, WorkflowRun

__all__ = ["Store", "insert_ignoring_duplicates"]


def _now() -> datetime:
    return datetime.now(UTC)


def insert_ignoring_duplicates(
    session: Session, model: type[Base], rows: Sequence[dict[str, Any]]
) -> None:
    """Insert ``rows``, skipping any that collide with a unique constraint.

    This is what makes every write idempotent: the same link or span delivered twice is
    stored once, and an existing row is never overwritten by a later, poorer source.
    """
    if not rows:
        return
    table = model.__table__
    assert isinstance(table, Table)
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        statement: Any = postgresql.insert(table).on_conflict_do_nothing()
    elif dialect == "sqlite":
        statement = sqlite.insert(table).on_conflict_do_nothing()
    else:  # pragma: no cover - the store supports SQLite and PostgreSQL only
        raise RuntimeError(f"unsupported database dialect {dialect!r}")
    session.execute(statement, list(rows))


class Store:
    """The SQL store behind an engine (SQLite or PostgreSQL)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.session = sessionmaker(engine, expire_on_commit=False)

    # --- linker writes -------------------------------------------------------------

    def save_run(self, facts: RunFacts) -> None:
        """Store one run's facts: the run and its calls are upserted, links only added."""
        try:
            self._save_run(facts)
        except IntegrityError:
            # Two readers of the same run raced to insert it; the second one now updates.
            self._save_run(facts)

    def _save_run(self, facts: RunFacts) -> None:
        now = _now()
        run_values = {
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
            "parent_namespace": facts.parent_namespace,
            "parent_workflow_id": facts.parent_workflow_id,
            "parent_run_id": facts.parent_run_id,
            "parent_event_id": facts.parent_event_id,
            "history_length": facts.history_length,
            "updated_at": now,
        }
        with self.session.begin() as session:
            run = session.scalars(
                select(WorkflowRun).where(
                    WorkflowRun.namespace == facts.namespace, WorkflowRun.run_id == facts.run_id
                )
            ).one_or_none()
            if run is None:
                run = WorkflowRun(**run_values)
                session.add(run)
                session.flush()
            elif facts.history_length >= run.history_length:
                for key, value in run_values.items():
                    setattr(run, key, value)
            else:
                # An older read of the history than the one stored: keep what we have.
                return
            existing = {
                call.event_id: call
                for call in session.scalars(select(Call).where(Call.run_pk == run.id))
            }
            for call_facts in facts.calls:
                values = asdict(call_facts)
                call = existing.get(call_facts.event_id)
                if call is None:
                    session.add(Call(run_pk=run.id, **values))
                else:
                    for key, value in values.items():
                        setattr(call, key, value)
            insert_ignoring_duplicates(
                session, Link, [{**asdict(link), "created_at": now} for link in facts.links]
            )

    def run_progress(self, namespace: str, run_id: str) -> tuple[str, int] | None:
        """``(status, history_length)`` stored for a run, or ``None`` if unknown."""
        return self.runs_progress(namespace, [run_id]).get(run_id)

    def runs_progress(self, namespace: str, run_ids: Sequence[str]) -> dict[str, tuple[str, int]]:
        """``run_id -> (status, history_length)`` for those of ``run_ids`` that are stored."""
        found: dict[str, tuple[str, int]] = {}
        with self.session() as session:
            for first in range(0, len(run_ids), 500):
                rows = session.execute(
                    select(
                        WorkflowRun.run_id, WorkflowRun.status, WorkflowRun.history_length
                    ).where(
                        WorkflowRun.namespace == namespace,
                        WorkflowRun.run_id.in_(run_ids[first : first + 500]),
                    )
                )
                found.update((run_id, (status, length)) for run_id, status, length in rows)
        return found

    def save_endpoints(self, endpoints: Iterable[tuple[str, str, str]]) -> None:
        """Replace the known Nexus endpoints with ``(name, namespace, task_queue)`` rows."""
        now = _now()
        with self.session.begin() as session:
            session.execute(delete(NexusEndpointRow))
            session.add_all(
                NexusEndpointRow(
                    name=name, target_namespace=ns, target_task_queue=queue, updated_at=now
                )
                for name, ns, queue in endpoints
            )

    def endpoint_namespaces(self) -> dict[str, str]:
        """Map of Nexus endpoint name to the namespace it targets."""
        with self.session() as session:
            rows = session.execute(select(NexusEndpointRow.name, NexusEndpointRow.target_namespace))
            return {name: namespace for name, namespace in rows}

    # --- namespace state -----------------------------------------------------------

    def namespace_state(self, namespace: str) -> NamespaceState | None:
        """The linker's stored progress in ``namespace``."""
        with self.session() as session:
            return session.get(NamespaceState, namespace)

    def all_namespace_states(self) -> list[NamespaceState]:
        """Every namespace the linker has worked on, by name."""
        with self.session() as session:
            return list(session.scalars(select(NamespaceState).order_by(NamespaceState.namespace)))

    def set_namespace_status(
        self,
        namespace: str,
        status: str,
        *,
        error: str | None = None,
        close_cursor: datetime | None = None,
        runs_linked: int = 0,
    ) -> None:
        """Record a poll of ``namespace``: its status, error, cursor and runs read."""
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
            state.runs_linked = (state.runs_linked or 0) + runs_linked

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
