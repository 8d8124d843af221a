"""Retention follows the call graph: it deletes whole trees, rooted where the graph says.

Facts come from recorded histories (no server): a handler named only by an operation
token, and a child whose parent was never stored.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from datetime import datetime, timedelta

import pytest
from sqlalchemy import select
from temporalio.api.enums.v1 import EventType

from interceptors import LINK_KEY_ENV
from tests.fixtures.recorded import LINK_KEY, load_history, strip_links
from tracer.db import WorkflowRun, create_db_engine, upgrade_database
from tracer.domain import LinkSource, Status
from tracer.jobs import purge_once
from tracer.store import RunFacts, Store


@pytest.fixture(autouse=True)
def deployment_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(LINK_KEY_ENV, LINK_KEY)


@pytest.fixture
def sqlite_store(sqlite_url: str) -> Iterator[Store]:
    """A migrated, empty SQLite store."""
    engine = create_db_engine(sqlite_url)
    upgrade_database(engine)
    try:
        yield Store(engine)
    finally:
        engine.dispose()


def stored(store: Store) -> set[str]:
    with store.session() as session:
        return set(session.scalars(select(WorkflowRun.workflow_id)))


def after(run: RunFacts) -> datetime:
    """A cutoff just after ``run`` closed."""
    assert run.close_time is not None
    return run.close_time + timedelta(seconds=1)


def token_linked_pair() -> tuple[RunFacts, RunFacts, RunFacts]:
    """The async Nexus caller, as seen while its operation runs and once it is done, and its
    handler; as an older server writes them, so only the operation token joins them."""
    caller = load_history("nexus_async_caller")
    events = strip_links(caller.events)
    started = next(
        e for e in events if e.event_type == EventType.EVENT_TYPE_NEXUS_OPERATION_STARTED
    )
    running = caller.parse(events[: started.event_id])
    done = caller.parse(events)
    handler = load_history("nexus_async_handler").parse()
    handler = dataclasses.replace(handler, links=[])
    assert running.status == Status.RUNNING and done.status == Status.COMPLETED
    assert [link.source for link in running.links] == [LinkSource.OPERATION_TOKEN]
    return running, done, handler


def test_a_token_linked_handler_stays_while_its_caller_runs(sqlite_store: Store) -> None:
    running, done, handler = token_linked_pair()
    sqlite_store.save_run(running)
    sqlite_store.save_run(handler)
    # The handler closed before the cutoff, but its tree's root is still running.
    report = purge_once(sqlite_store, after(handler) + timedelta(days=1))
    assert (report.trees, report.runs) == (0, 0)
    assert stored(sqlite_store) == {running.workflow_id, handler.workflow_id}
    # Once the caller is done too, the whole tree goes, together.
    sqlite_store.save_run(done)
    report = purge_once(sqlite_store, after(done))
    assert (report.trees, report.runs) == (1, 2)
    assert stored(sqlite_store) == set()


def test_a_child_whose_parent_was_never_stored_is_a_root(sqlite_store: Store) -> None:
    child = load_history("child_failed").parse()
    assert child.parent_run_id  # it has a parent, just not one the store knows
    sqlite_store.save_run(child)
    assert child.close_time is not None
    kept = purge_once(sqlite_store, child.close_time - timedelta(seconds=1))
    assert (kept.trees, kept.runs) == (0, 0)
    assert stored(sqlite_store) == {child.workflow_id}
    report = purge_once(sqlite_store, after(child))
    assert (report.trees, report.runs) == (1, 1)
    assert stored(sqlite_store) == set()


def test_a_child_goes_with_its_parent_not_alone(sqlite_store: Store) -> None:
    parent = load_history("child_parent").parse()
    child = load_history("child_completed").parse()
    sqlite_store.save_run(parent)
    sqlite_store.save_run(child)
    # Between the child's close and the parent's: nothing goes, the parent is the root.
    assert child.close_time is not None and parent.close_time is not None
    assert child.close_time < parent.close_time
    between = child.close_time + (parent.close_time - child.close_time) / 2
    report = purge_once(sqlite_store, between)
    assert (report.trees, report.runs) == (0, 0)
    assert stored(sqlite_store) == {parent.workflow_id, child.workflow_id}
    report = purge_once(sqlite_store, after(parent))
    assert (report.trees, report.runs) == (1, 2)
