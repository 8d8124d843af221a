"""The call-graph rules on recorded histories stored in a real SQLite database.

Which run hangs under which call, which run roots a tree and which runs a tree holds:
what ``Store.tree`` shows and what ``CallGraph`` answers, for each edge kind and for each
record that can name a caller (see :func:`tracer.query.precedence`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select

from interceptors import LINK_KEY_ENV
from tests.fixtures.recorded import LINK_KEY, Recorded, load_history, strip_links
from tracer.db import Link, WorkflowRun, create_db_engine, upgrade_database
from tracer.domain import LinkKind, LinkSource, Status
from tracer.query import CallGraph, precedence, root_condition
from tracer.store import LinkFacts, RunFacts, Store


@pytest.fixture(autouse=True)
def deployment_key(monkeypatch: pytest.MonkeyPatch) -> None:
    """Parse with the key the recorded headers were signed with, as the collector would."""
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


def save(store: Store, *names: str) -> dict[str, RunFacts]:
    """Parse and store the recorded histories ``names``, in that order."""
    facts = {name: load_history(name).parse() for name in names}
    for run in facts.values():
        store.save_run(run)
    return facts


def tree(store: Store, recorded: Recorded | RunFacts, run_id: str | None = None) -> dict[str, Any]:
    root = store.tree(recorded.namespace, recorded.workflow_id, run_id, scope=None)
    assert root is not None, f"{recorded.workflow_id} is not stored"
    return root.to_json()


def row(graph: CallGraph, run: RunFacts | Recorded) -> WorkflowRun:
    found = graph.run(run.namespace, run.run_id)
    assert found is not None, f"{run.workflow_id} is not stored"
    return found


def workflows_under(node: dict[str, Any]) -> list[tuple[str, str, bool]]:
    """``(workflow_id, link, verified)`` of the workflow nodes right below ``node``."""
    return [
        (child["workflow_id"], child["link"], child["verified"])
        for child in node["children"]
        if child["kind"] == "workflow"
    ]


def roots(store: Store) -> set[str]:
    """Workflow ids of the runs that :func:`root_condition` calls roots."""
    with store.session() as session:
        return set(session.scalars(select(WorkflowRun.workflow_id).where(root_condition())))


# --- Nexus: the handler hangs under the call that started it -----------------------------


@pytest.mark.parametrize(
    "order",
    [
        ("nexus_async_caller", "nexus_async_handler"),
        ("nexus_async_handler", "nexus_async_caller"),
    ],
    ids=["caller-first", "handler-first"],
)
def test_async_handler_hangs_under_its_call(sqlite_store: Store, order: tuple[str, str]) -> None:
    facts = save(sqlite_store, *order)
    caller, handler = facts["nexus_async_caller"], facts["nexus_async_handler"]
    # Asked from the handler, the tree is the caller's, rooted at the caller.
    root = tree(sqlite_store, handler)
    assert (root["workflow_id"], root["run_id"], root["link"]) == (
        caller.workflow_id,
        caller.run_id,
        "root",
    )
    [call] = root["children"]
    assert (call["kind"], call["name"], call["status"]) == (
        "nexus_operation",
        "billing-endpoint/BillingService/charge",
        "completed",
    )
    assert call["details"]["request_id"] == caller.calls[0].request_id
    [node] = call["children"]
    assert (node["namespace"], node["workflow_id"], node["run_id"]) == (
        "payments",
        handler.workflow_id,
        handler.run_id,
    )
    assert (node["link"], node["verified"], node["status"]) == ("nexus", True, "completed")
    [activity] = node["children"]
    assert (activity["name"], activity["details"]["attempt"]) == ("capture_payment", 2)
    assert tree(sqlite_store, caller) == root
    assert roots(sqlite_store) == {caller.workflow_id}


def test_root_of_and_members(sqlite_store: Store) -> None:
    facts = save(sqlite_store, "nexus_async_caller", "nexus_async_handler", "terminated")
    caller, handler = facts["nexus_async_caller"], facts["nexus_async_handler"]
    with sqlite_store.session() as session:
        graph = CallGraph(session)
        caller_row, handler_row = row(graph, caller), row(graph, handler)
        alone = row(graph, facts["terminated"])
        assert graph.root_of(handler_row).id == graph.root_of(caller_row).id == caller_row.id
        assert graph.root_of(alone).id == alone.id
        assert [run.id for run in graph.members(caller_row)] == [caller_row.id, handler_row.id]
        assert [run.id for run in graph.members(alone)] == [alone.id]
        best = graph.caller_of(handler_row)
        assert best is not None
        assert (best.run.id, best.kind, best.source, best.event_id) == (
            caller_row.id,
            LinkKind.NEXUS,
            LinkSource.CALLER_HISTORY,
            caller.calls[0].event_id,
        )
        assert graph.caller_of(caller_row) is None
    assert roots(sqlite_store) == {caller.workflow_id, "stuck"}


# --- which record wins when several name a caller ----------------------------------------


def test_precedence_ranks() -> None:
    ranks = [
        precedence(LinkSource.CALLER_HISTORY, True),
        precedence(LinkSource.HANDLER_HISTORY, True),
        precedence(LinkSource.OPERATION_TOKEN, True),
        precedence(LinkSource.HEADER, True),
        precedence(LinkSource.HEADER, False),
    ]
    assert ranks == sorted(ranks) and len(set(ranks)) == 5


def _caller_facts(kept: str) -> RunFacts:
    recorded = load_history("nexus_async_caller")
    if kept == "history":
        return recorded.parse()
    if kept == "token":  # as an older server writes it: the token is all that names the handler
        return recorded.parse(strip_links(recorded.events))
    return dataclasses.replace(recorded.parse(), links=[])


def _handler_facts(kept: str) -> RunFacts:
    run = load_history("nexus_async_handler").parse()
    if kept == "history":
        return run
    if kept == "header":
        return dataclasses.replace(
            run, links=[link for link in run.links if link.source == LinkSource.HEADER]
        )
    return dataclasses.replace(run, links=[])


@pytest.mark.parametrize(
    ("caller_keeps", "handler_keeps", "winner"),
    [
        ("history", "history", LinkSource.CALLER_HISTORY),
        ("token", "history", LinkSource.HANDLER_HISTORY),
        ("token", "header", LinkSource.OPERATION_TOKEN),
        ("token", "nothing", LinkSource.OPERATION_TOKEN),
        ("nothing", "header", LinkSource.HEADER),
    ],
)
def test_the_best_record_places_the_handler(
    sqlite_store: Store, caller_keeps: str, handler_keeps: str, winner: LinkSource
) -> None:
    caller, handler = _caller_facts(caller_keeps), _handler_facts(handler_keeps)
    sqlite_store.save_run(caller)
    sqlite_store.save_run(handler)
    with sqlite_store.session() as session:
        graph = CallGraph(session)
        best = graph.caller_of(row(graph, handler))
        assert best is not None
        assert (best.run.run_id, best.source, best.verified) == (caller.run_id, winner, True)
    # Whichever record it is, the handler hangs under the call (not just under the run).
    root = tree(sqlite_store, handler)
    assert root["workflow_id"] == caller.workflow_id
    [call] = root["children"]
    assert workflows_under(call) == [(handler.workflow_id, "nexus", True)]
    assert call["children"][0]["run_id"] == handler.run_id


def test_a_token_names_the_run_started_for_the_call(sqlite_store: Store) -> None:
    caller = _caller_facts("token")
    handler = _handler_facts("nothing")
    # An older run of the same workflow id, closed before the call began.
    call_start = caller.calls[0].start_time
    older = RunFacts(
        namespace=handler.namespace,
        workflow_id=handler.workflow_id,
        run_id="older-run",
        workflow_type=handler.workflow_type,
        task_queue=handler.task_queue,
        status=Status.COMPLETED,
        start_time=call_start - timedelta(hours=2),
        close_time=call_start - timedelta(hours=1),
        history_length=5,
    )
    for run in (older, caller, handler):
        sqlite_store.save_run(run)
    [call] = tree(sqlite_store, caller)["children"]
    assert [child["run_id"] for child in call["children"]] == [handler.run_id]
    alone = tree(sqlite_store, older, run_id="older-run")
    assert (alone["run_id"], alone["link"]) == ("older-run", "root")


def test_a_later_run_of_a_token_named_workflow_is_a_root_everywhere(sqlite_store: Store) -> None:
    caller = _caller_facts("token")
    handler = _handler_facts("nothing")
    assert handler.close_time is not None
    # The handler workflow ran again later (continued as new, or its id was reused).
    later = dataclasses.replace(
        handler,
        run_id="later-run",
        calls=[],
        start_time=handler.close_time + timedelta(seconds=1),
        close_time=handler.close_time + timedelta(seconds=2),
    )
    for run in (caller, handler, later):
        sqlite_store.save_run(run)
    with sqlite_store.session() as session:
        graph = CallGraph(session)
        later_row = row(graph, later)
        assert graph.root_of(later_row).id == later_row.id
        assert later_row.id not in {run.id for run in graph.members(row(graph, caller))}
        with_roots = set(session.scalars(select(WorkflowRun.run_id).where(root_condition())))
    assert with_roots == {caller.run_id, later.run_id}


# --- activity wrappers: signed and unsigned claims ----------------------------------------


def test_wrapper_handlers_hang_under_their_activities(sqlite_store: Store) -> None:
    facts = save(
        sqlite_store, "wrapper_caller", "wrapper_signed_handler", "wrapper_unsigned_handler"
    )
    caller = facts["wrapper_caller"]
    root = tree(sqlite_store, caller)
    signed_call, unsigned_call = root["children"]
    assert (signed_call["details"]["activity_id"], unsigned_call["details"]["activity_id"]) == (
        "1",
        "2",
    )
    assert workflows_under(signed_call) == [("reserve-signed", "activity_wrapper", True)]
    # An unsigned claim still links the handler, shown as unverified.
    assert workflows_under(unsigned_call) == [("reserve-unsigned", "activity_wrapper", False)]
    assert tree(sqlite_store, facts["wrapper_unsigned_handler"]) == root


def test_a_signed_claim_beats_an_unsigned_one(sqlite_store: Store) -> None:
    facts = save(sqlite_store, "wrapper_caller", "nexus_async_caller")
    caller, other = facts["wrapper_caller"], facts["nexus_async_caller"]
    handler = load_history("wrapper_signed_handler").parse()
    [signed] = handler.links
    # Someone else's unsigned claim that the handler was theirs.
    forged = dataclasses.replace(
        signed,
        caller_namespace=other.namespace,
        caller_workflow_id=other.workflow_id,
        caller_run_id=other.run_id,
        caller_activity_id="9",
        verified=False,
    )
    sqlite_store.save_run(dataclasses.replace(handler, links=[forged, signed]))
    with sqlite_store.session() as session:
        graph = CallGraph(session)
        best = graph.caller_of(row(graph, handler))
        assert best is not None
        assert (best.run.run_id, best.verified, best.activity_id) == (caller.run_id, True, "1")
    assert tree(sqlite_store, handler)["workflow_id"] == caller.workflow_id


def test_an_unsigned_claim_alone_still_places_the_handler(sqlite_store: Store) -> None:
    facts = save(sqlite_store, "wrapper_caller", "nexus_async_caller")
    other = facts["nexus_async_caller"]
    handler = load_history("wrapper_signed_handler").parse()
    [signed] = handler.links
    forged = dataclasses.replace(
        signed,
        caller_namespace=other.namespace,
        caller_workflow_id=other.workflow_id,
        caller_run_id=other.run_id,
        caller_activity_id="9",
        verified=False,
    )
    sqlite_store.save_run(dataclasses.replace(handler, links=[forged]))
    root = tree(sqlite_store, handler)
    assert root["workflow_id"] == other.workflow_id
    # No call of the claimed caller matches the claim: the handler hangs off the run itself.
    assert workflows_under(root) == [(handler.workflow_id, "activity_wrapper", False)]


# --- signals and updates ----------------------------------------------------------------


def test_messages_show_under_the_call_but_make_no_parent(sqlite_store: Store) -> None:
    facts = save(sqlite_store, "message_target", "message_sender")
    sender, target = facts["message_sender"], facts["message_target"]
    root = tree(sqlite_store, sender)
    [call] = root["children"]
    assert call["name"] == "notify_mailbox"
    assert [
        (m["kind"], m["name"], m["workflow_id"], m["run_id"], m["link"], m["verified"])
        for m in call["children"]
    ] == [
        ("signal", "deposit", target.workflow_id, target.run_id, "activity_wrapper", True),
        ("update", "count", target.workflow_id, target.run_id, "activity_wrapper", True),
    ]
    assert [m["details"]["workflow_type"] for m in call["children"]] == ["MailboxWorkflow"] * 2
    own = tree(sqlite_store, target)
    assert (own["workflow_id"], own["link"]) == (target.workflow_id, "root")
    assert roots(sqlite_store) == {sender.workflow_id, target.workflow_id}
    with sqlite_store.session() as session:
        graph = CallGraph(session)
        sender_row = row(graph, sender)
        assert [run.id for run in graph.members(sender_row)] == [sender_row.id]


# --- children ---------------------------------------------------------------------------


@pytest.mark.parametrize("parent_links", [True, False], ids=["both-histories", "start-event"])
def test_children_hang_under_their_start_calls(sqlite_store: Store, parent_links: bool) -> None:
    parent = load_history("child_parent").parse()
    if not parent_links:  # only the children's start events name the parent
        parent = dataclasses.replace(parent, links=[])
    sqlite_store.save_run(parent)
    save(sqlite_store, "child_completed", "child_failed")
    root = tree(sqlite_store, load_history("child_failed"))
    assert (root["workflow_id"], root["link"]) == ("parent", "root")
    assert [workflows_under(call) for call in root["children"]] == [
        [("parent-child-0", "child", True)],
        [("parent-child-1", "child", True)],
    ]
    failed = root["children"][1]["children"][0]
    assert (failed["status"], failed["error"]) == (
        "failed",
        {"type": "LeafError", "message": "leaf failed"},
    )
    assert roots(sqlite_store) == {"parent"}


def test_a_child_whose_parent_is_not_stored_is_a_root(sqlite_store: Store) -> None:
    facts = save(sqlite_store, "child_failed")
    child = facts["child_failed"]
    root = tree(sqlite_store, child)
    assert (root["workflow_id"], root["link"]) == (child.workflow_id, "root")
    with sqlite_store.session() as session:
        graph = CallGraph(session)
        child_row = row(graph, child)
        assert graph.root_of(child_row).id == child_row.id
    assert roots(sqlite_store) == {child.workflow_id}


# --- a handler two callers share -----------------------------------------------------------

_ATTACH = ("nexus_attach_first_caller", "nexus_attach_second_caller", "nexus_attach_handler")


@pytest.mark.parametrize(
    "order",
    [
        pytest.param(_ATTACH, id="starter-stored-first"),
        pytest.param(
            (_ATTACH[1], _ATTACH[0], _ATTACH[2]),
            id="attacher-stored-first",
        ),
        pytest.param(
            (_ATTACH[2], _ATTACH[1], _ATTACH[0]),
            id="handler-stored-first",
        ),
    ],
)
def test_a_shared_handler_hangs_under_the_caller_that_started_it(
    sqlite_store: Store, order: tuple[str, str, str]
) -> None:
    facts = save(sqlite_store, *order)
    handler = facts["nexus_attach_handler"]
    root = tree(sqlite_store, handler)
    assert root["workflow_id"] == "checkout-first"
    [call] = root["children"]
    assert workflows_under(call) == [(handler.workflow_id, "nexus", True)]


# --- continued-as-new -------------------------------------------------------------------


def test_each_run_of_a_continued_workflow_is_its_own_tree(sqlite_store: Store) -> None:
    facts = save(sqlite_store, "continued_first_run", "continued_second_run")
    first, second = facts["continued_first_run"], facts["continued_second_run"]
    # Without a run id the tree is the latest run's.
    assert tree(sqlite_store, first)["run_id"] == second.run_id
    assert tree(sqlite_store, first, run_id=first.run_id)["run_id"] == first.run_id
    with sqlite_store.session() as session:
        run_ids = set(session.scalars(select(WorkflowRun.run_id).where(root_condition())))
    assert run_ids == {first.run_id, second.run_id}


def test_link_facts_survive_a_round_trip_through_the_store(sqlite_store: Store) -> None:
    """Every parsed link is stored once, with the fields the graph reads."""
    facts = save(sqlite_store, "nexus_attach_handler", "message_target")

    with sqlite_store.session() as session:
        stored = {
            (
                row.kind,
                row.source,
                row.caller_run_id,
                row.caller_event_id,
                row.caller_request_id,
                row.caller_activity_id,
                row.handler_run_id,
                row.verified,
                row.detail,
                row.target_event_id,
            )
            for row in session.scalars(select(Link))
        }
    parsed: list[LinkFacts] = [link for run in facts.values() for link in run.links]
    assert stored == {
        (
            link.kind,
            link.source,
            link.caller_run_id,
            link.caller_event_id,
            link.caller_request_id,
            link.caller_activity_id,
            link.handler_run_id,
            link.verified,
            link.detail,
            link.target_event_id,
        )
        for link in parsed
    }
    assert len(stored) == len(parsed)
