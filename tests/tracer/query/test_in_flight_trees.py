"""Calls a closed caller left in flight, and messages Nexus handlers sent, in the tree:
the settle rule alone, then on recorded histories stored in a real SQLite database."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select
from temporalio.api.enums.v1 import EventType

from interceptors import LINK_KEY_ENV
from tests.fixtures.recorded import LINK_KEY, Recorded, load_history
from tracer.db import TreeSummary, create_db_engine, upgrade_database
from tracer.domain import LinkSource, NodeKind, Placement, Status
from tracer.query import (
    SETTLED_BY,
    Outcome,
    TreeNode,
    failure_origins,
    figures_of,
    iso_time,
    settle,
)
from tracer.store import RunFacts, Store

T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def deployment_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(LINK_KEY_ENV, LINK_KEY)


@pytest.fixture
def sqlite_store(sqlite_url: str) -> Iterator[Store]:
    engine = create_db_engine(sqlite_url)
    upgrade_database(engine)
    try:
        yield Store(engine)
    finally:
        engine.dispose()


# --- the rule on its own ------------------------------------------------------------------


def node(status: str, start: int, end: int | None, kind: str = NodeKind.WORKFLOW) -> TreeNode:
    return TreeNode(
        kind=kind,
        namespace="orders",
        name="n",
        status=status,
        start_time=T0 + timedelta(seconds=start),
        end_time=T0 + timedelta(seconds=end) if end is not None else None,
        link=Placement.CALL,
    )


def outcome(status: str, start: int, end: int | None, error: str | None = None) -> Outcome:
    return Outcome(
        status,
        T0 + timedelta(seconds=start),
        T0 + timedelta(seconds=end) if end is not None else None,
        {"type": error, "message": "m"} if error else None,
    )


def settled(call_status: str, caller_status: str, *handlers: Outcome) -> TreeNode:
    call = node(call_status, 1, None, NodeKind.NEXUS_OPERATION)
    caller = node(caller_status, 0, 5 if caller_status != Status.RUNNING else None)
    settle(call, caller, handlers)
    return call


def test_a_running_caller_leaves_its_calls_alone() -> None:
    call = settled(Status.RUNNING, Status.RUNNING, outcome(Status.COMPLETED, 2, 3))
    assert (call.status, call.end_time, SETTLED_BY in call.details) == (
        Status.RUNNING,
        None,
        False,
    )


def test_a_finished_call_keeps_its_own_outcome() -> None:
    call = settled(Status.FAILED, Status.COMPLETED, outcome(Status.COMPLETED, 2, 3))
    assert (call.status, SETTLED_BY in call.details) == (Status.FAILED, False)


@pytest.mark.parametrize(
    ("handler", "error"),
    [
        (outcome(Status.CANCELED, 2, 9), {"type": "CanceledError", "message": "canceled"}),
        (outcome(Status.FAILED, 2, 9, "CardDeclined"), {"type": "CardDeclined", "message": "m"}),
        (outcome(Status.COMPLETED, 2, 9), None),
    ],
)
def test_a_closed_caller_s_call_takes_its_handlers_final_state(
    handler: Outcome, error: dict[str, str] | None
) -> None:
    call = settled(Status.RUNNING, Status.COMPLETED, handler)
    assert (call.status, call.end_time, call.error) == (handler.status, handler.end_time, error)
    assert call.details[SETTLED_BY] == "handler"


def test_the_handler_run_that_started_last_has_the_final_word() -> None:
    # A continued-as-new handler: the first run "completed" into the second, which failed.
    call = settled(
        Status.RUNNING,
        Status.FAILED,
        outcome(Status.FAILED, 4, 9, "Late"),
        outcome(Status.COMPLETED, 2, 4),
    )
    assert (call.status, call.end_time) == (Status.FAILED, T0 + timedelta(seconds=9))


@pytest.mark.parametrize(
    "handlers",
    [(), (outcome(Status.RUNNING, 2, None),)],
    ids=["no-handler-known", "handler-still-running"],
)
def test_with_nothing_final_known_a_call_is_abandoned_when_its_caller_closed(
    handlers: tuple[Outcome, ...],
) -> None:
    call = settled(Status.RUNNING, Status.CANCELED, *handlers)
    assert (call.status, call.end_time, call.error) == (
        Status.ABANDONED,
        T0 + timedelta(seconds=5),
        None,
    )
    assert call.details[SETTLED_BY] == "caller_closed"


# --- recorded histories ---------------------------------------------------------------------


def save(store: Store, *runs: RunFacts | str) -> dict[str, RunFacts]:
    """Store runs (recorded history names are parsed), in order; return the facts by name."""
    saved: dict[str, RunFacts] = {}
    for run in runs:
        facts = load_history(run).parse() if isinstance(run, str) else run
        store.save_run(facts)
        saved[run if isinstance(run, str) else facts.workflow_id] = facts
    return saved


def tree_of(store: Store, run: RunFacts | Recorded) -> TreeNode:
    root = store.tree(run.namespace, run.workflow_id, scope=None)
    assert root is not None
    return root


def calls(root: TreeNode, kind: str = NodeKind.NEXUS_OPERATION) -> list[TreeNode]:
    return [child for child in root.children if child.kind == kind]


def running_prefix(name: str, close: EventType.ValueType) -> RunFacts:
    """A recorded run read before it closed: its events up to ``close`` (left out)."""
    recorded = load_history(name)
    [closed] = [event for event in recorded.events if event.event_type == close]
    run = recorded.parse(recorded.events[: closed.event_id - 1])
    assert run.status == Status.RUNNING
    return run


def test_cancelled_operations_take_their_handlers_cancellation(sqlite_store: Store) -> None:
    facts = save(sqlite_store, "cancel_caller", "cancel_winner", "cancel_loser_1", "cancel_loser_2")
    caller = facts["cancel_caller"]
    root = tree_of(sqlite_store, caller)
    won, *lost = calls(root)
    assert (won.status, SETTLED_BY in won.details) == (Status.COMPLETED, False)
    assert caller.close_time is not None
    for call, name in zip(lost, ("cancel_loser_1", "cancel_loser_2"), strict=True):
        handler = facts[name]
        [handler_node] = call.children
        assert (handler_node.run_id, handler_node.status) == (handler.run_id, Status.CANCELED)
        # The caller's history stops at NexusOperationCancelRequested; the handler's says
        # how, and when, it ended: after the caller had returned.
        assert (call.status, call.end_time) == (Status.CANCELED, handler.close_time)
        assert handler.close_time is not None and handler.close_time > caller.close_time
        assert call.error == {"type": "CanceledError", "message": "canceled"}
        assert call.details[SETTLED_BY] == "handler"
    assert not [n for n in root.walk() if n.status == Status.RUNNING]
    figures = figures_of(root)
    assert figures.error_count == 0  # cancelled is not an error
    assert figures.tree_end == max(facts[n].close_time for n in facts if facts[n].close_time)


def test_handlers_still_winding_down_leave_their_calls_abandoned(sqlite_store: Store) -> None:
    caller = save(sqlite_store, "cancel_caller", "cancel_winner")["cancel_caller"]
    loser = running_prefix("cancel_loser_1", EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CANCELED)
    save(sqlite_store, loser)
    root = tree_of(sqlite_store, caller)
    _, winding_down, unknown = calls(root)
    # One handler still runs, the other is not stored: neither is final.
    for call in (winding_down, unknown):
        assert (call.status, call.end_time, call.error) == (
            Status.ABANDONED,
            caller.close_time,
            None,
        )
    assert [child.status for child in winding_down.children] == [Status.RUNNING]
    assert unknown.children == []
    assert figures_of(root).tree_end is None  # the running handler keeps the tree open

    # Once the handlers' closes are read, the calls take them, and so does the summary.
    sqlite_store.refresh_summaries()
    assert summary_end(sqlite_store, caller) is None
    facts = save(sqlite_store, "cancel_loser_1", "cancel_loser_2")
    sqlite_store.refresh_summaries()
    last = max(run.close_time for run in facts.values() if run.close_time)
    assert summary_end(sqlite_store, caller) == last
    assert [c.status for c in calls(tree_of(sqlite_store, caller))] == [
        Status.COMPLETED,
        Status.CANCELED,
        Status.CANCELED,
    ]


def summary_end(store: Store, root: RunFacts) -> datetime | None:
    with store.session() as session:
        [end] = session.scalars(
            select(TreeSummary.tree_end).where(TreeSummary.run_id == root.run_id)
        ).all()
        return end


def test_a_caller_still_running_shows_its_calls_running(sqlite_store: Store) -> None:
    caller = running_prefix("cancel_caller", EventType.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED)
    save(sqlite_store, caller, "cancel_winner", "cancel_loser_1", "cancel_loser_2")
    statuses = [call.status for call in calls(tree_of(sqlite_store, caller))]
    assert statuses == [Status.COMPLETED, Status.RUNNING, Status.RUNNING]


def test_given_up_calls(sqlite_store: Store) -> None:
    facts = save(sqlite_store, "give_up_caller", "give_up_handler")
    caller, handler = facts["give_up_caller"], facts["give_up_handler"]
    sync, run_op = calls(tree_of(sqlite_store, caller))
    # The sync handler's answer went nowhere: nothing records it.
    assert (sync.name, sync.status, sync.end_time) == (
        "billing-endpoint/GreetingService/greet_now",
        Status.ABANDONED,
        caller.close_time,
    )
    assert sync.children == []  # no record proves a handler ran
    # The async handler went on and finished after its caller closed.
    assert (run_op.status, run_op.end_time) == (Status.COMPLETED, handler.close_time)
    assert handler.close_time is not None and caller.close_time is not None
    assert handler.close_time > caller.close_time
    assert [child.run_id for child in run_op.children] == [handler.run_id]
    assert failure_origins(tree_of(sqlite_store, caller)) == []  # abandoned is no error


def test_a_child_left_under_an_abandon_policy(sqlite_store: Store) -> None:
    parent = save(sqlite_store, "left_child_parent")["left_child_parent"]
    [call] = calls(tree_of(sqlite_store, parent), NodeKind.CHILD_WORKFLOW)
    assert (call.status, call.end_time) == (Status.ABANDONED, parent.close_time)

    running = running_prefix("left_child", EventType.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED)
    save(sqlite_store, running)
    [call] = calls(tree_of(sqlite_store, parent), NodeKind.CHILD_WORKFLOW)
    assert call.status == Status.ABANDONED
    assert [(c.workflow_id, c.status) for c in call.children] == [
        (running.workflow_id, Status.RUNNING)
    ]

    child = save(sqlite_store, "left_child")["left_child"]
    [call] = calls(tree_of(sqlite_store, parent), NodeKind.CHILD_WORKFLOW)
    assert (call.status, call.end_time, call.error) == (Status.COMPLETED, child.close_time, None)
    assert call.details[SETTLED_BY] == "handler"


def test_settled_calls_in_the_json_contract(sqlite_store: Store) -> None:
    facts = save(sqlite_store, "give_up_caller")
    root = tree_of(sqlite_store, facts["give_up_caller"]).to_json()
    statuses = [(c["status"], c["end_time"]) for c in root["children"] if c["kind"] != "activity"]
    end = iso_time(facts["give_up_caller"].close_time)
    assert statuses == [("abandoned", end), ("abandoned", end)]


# --- messages sent by Nexus handlers ------------------------------------------------------


def server_only(run: RunFacts) -> RunFacts:
    """The run as workers without this project's interceptors leave it: no header claims."""
    return dataclasses.replace(
        run, links=[link for link in run.links if link.source != LinkSource.HEADER]
    )


def sent_under(call: TreeNode) -> list[tuple[str, str, str, str | None, str | None]]:
    """``(where, kind, name, workflow id, run id)`` of the messages below a Nexus call:
    ``where`` is the kind of the node they hang under."""
    found = []
    for parent in (call, *call.children):
        for child in parent.children:
            if child.kind in (NodeKind.SIGNAL, NodeKind.UPDATE):
                found.append((parent.kind, child.kind, child.name, child.workflow_id, child.run_id))
    return found


@pytest.mark.parametrize("records", ["server", "server+headers"])
def test_messages_hang_under_the_handler_that_sent_them(sqlite_store: Store, records: str) -> None:
    shopper, entity = (load_history(n).parse() for n in ("messages_shopper", "messages_entity"))
    if records == "server":
        entity = server_only(entity)
    save(sqlite_store, shopper, entity)
    root = tree_of(sqlite_store, shopper)
    approve, add, add_by_update, add_later = calls(root)
    target = (entity.workflow_id, entity.run_id)
    handler = NodeKind.NEXUS_HANDLER
    assert sent_under(approve) == [(handler, NodeKind.SIGNAL, "approve", *target)]
    assert sent_under(add_by_update) == [(handler, NodeKind.UPDATE, "add", *target)]
    # A sync handler's plain execute_update leaves no server link: only a header names it.
    expected = [(handler, NodeKind.UPDATE, "add", *target)] if records != "server" else []
    assert sent_under(add) == expected
    # An update-backed operation left running: no handler run, so its update hangs under
    # the call, which its closed caller abandoned.
    assert add_later.status == Status.ABANDONED
    assert sent_under(add_later) == [
        (NodeKind.NEXUS_OPERATION, NodeKind.UPDATE, "add_later", *target)
    ]
    for message in (n for n in root.walk() if n.kind in (NodeKind.SIGNAL, NodeKind.UPDATE)):
        assert (message.namespace, message.status, message.verified) == (
            "payments",
            Status.COMPLETED,
            True,
        )
        assert message.details["workflow_type"] == "ItemsWorkflow"
    # The entity lives in its own tree: being signalled and updated does not move it.
    assert not [n for n in root.walk() if n.kind == NodeKind.WORKFLOW and n.run_id == entity.run_id]
    own = tree_of(sqlite_store, entity)
    assert (own.run_id, own.link, own.children) == (entity.run_id, Placement.ROOT, [])


def test_a_handler_message_alone_proves_the_sync_handler_ran(sqlite_store: Store) -> None:
    # The shopper read while its approve call was in flight: the signal is already there.
    recorded = load_history("messages_shopper")
    [completed] = [
        e for e in recorded.events if e.event_type == EventType.EVENT_TYPE_NEXUS_OPERATION_COMPLETED
    ][:1]
    shopper = recorded.parse(recorded.events[: completed.event_id - 1])
    entity = server_only(load_history("messages_entity").parse())
    save(sqlite_store, shopper, entity)
    [approve] = calls(tree_of(sqlite_store, shopper))
    [handler] = approve.children
    assert (approve.status, handler.kind, handler.status) == (
        Status.RUNNING,
        NodeKind.NEXUS_HANDLER,
        Status.RUNNING,
    )
    assert [(m.kind, m.name) for m in handler.children] == [(NodeKind.SIGNAL, "approve")]
