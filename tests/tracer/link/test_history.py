"""``parse_history`` on recorded histories, one edge kind at a time (no server needed).

Ids that a server makes up (run ids, request ids) are never written here: each is checked
against the other side's history, which recorded it independently.
"""

from __future__ import annotations

import itertools
import re
from datetime import UTC

import pytest
from temporalio.api.enums.v1 import EventType, RetryState, TimeoutType
from temporalio.api.failure.v1 import ApplicationFailureInfo, Failure
from temporalio.api.history.v1 import HistoryEvent

from interceptors import CALLER_HEADER, LINK_KEY_ENV, CallerInfo, encode_caller_header
from tests.fixtures.recorded import LINK_KEY, Recorded, fixture_names, load_history, strip_links
from tracer.domain import STARTING_LINKS, ErrorKind, LinkKind, LinkSource, NodeKind, Status
from tracer.link import decode_operation_token, failure_kind, operation_token_json
from tracer.store import CallFacts, LinkFacts, RunFacts

TRACEPARENT = re.compile(r"^00-[0-9a-f]{32}-[0-9a-f]{16}-0[01]$")


@pytest.fixture(autouse=True)
def deployment_key(monkeypatch: pytest.MonkeyPatch) -> None:
    """Parse with the key the recorded headers were signed with, as the collector would."""
    monkeypatch.setenv(LINK_KEY_ENV, LINK_KEY)


def parsed(name: str) -> tuple[Recorded, RunFacts]:
    recorded = load_history(name)
    return recorded, recorded.parse()


def only(items: list[LinkFacts], **where: object) -> LinkFacts:
    """The one link whose fields match ``where``."""
    found = [item for item in items if all(getattr(item, k) == v for k, v in where.items())]
    assert len(found) == 1, f"{len(found)} links match {where}: {items}"
    return found[0]


def events_of(recorded: Recorded, event_type: EventType.ValueType) -> list[HistoryEvent]:
    return [event for event in recorded.events if event.event_type == event_type]


def assert_links_to(link: LinkFacts, caller: RunFacts, handler: Recorded) -> None:
    """``link`` joins the ``caller`` run to the ``handler`` run, both as their histories say."""
    assert (link.caller_namespace, link.caller_workflow_id, link.caller_run_id) == (
        caller.namespace,
        caller.workflow_id,
        caller.run_id,
    )
    assert (link.handler_namespace, link.handler_workflow_id, link.handler_run_id) == (
        handler.namespace,
        handler.workflow_id,
        handler.run_id,
    )


# --- what every run says about itself -----------------------------------------------------

# Callers that closed on calls they did not wait for: their histories leave those running.
LEFT_IN_FLIGHT = {
    "cancel_caller": 2,
    "give_up_caller": 2,
    "left_child_parent": 1,
    "messages_shopper": 1,
}


@pytest.mark.parametrize("name", fixture_names())
def test_every_history_reads_its_run(name: str) -> None:
    recorded, run = parsed(name)
    started = recorded.events[0]
    assert (run.namespace, run.workflow_id, run.run_id) == (
        recorded.namespace,
        recorded.workflow_id,
        recorded.run_id,
    )
    assert (
        run.workflow_type == started.workflow_execution_started_event_attributes.workflow_type.name
    )
    assert run.task_queue and run.workflow_type
    assert run.start_time == started.event_time.ToDatetime(tzinfo=run.start_time.tzinfo)
    assert run.history_length == recorded.events[-1].event_id == len(recorded.events)
    # Every recorded run is over, so it has a close time after its start, and so do its calls
    # but those it left in flight.
    assert run.status != Status.RUNNING
    assert run.close_time is not None and run.close_time >= run.start_time
    assert [call.event_id for call in run.calls] == sorted(call.event_id for call in run.calls)
    in_flight = [call for call in run.calls if call.status == Status.RUNNING]
    assert len(in_flight) == LEFT_IN_FLIGHT.get(name, 0), in_flight
    for call in run.calls:
        if call.status == Status.RUNNING:
            assert (call.end_time, call.error_type) == (None, None), call
            continue
        assert call.end_time is not None and run.start_time <= call.start_time <= call.end_time
        assert (call.error_type is None) == (call.status == Status.COMPLETED), call
    assert len(set(run.links)) == len(run.links), "the same edge recorded twice"


# --- Nexus ------------------------------------------------------------------------------


def nexus_call(run: RunFacts) -> CallFacts:
    [call] = run.calls
    assert call.kind == NodeKind.NEXUS_OPERATION
    return call


def test_async_operation_caller() -> None:
    _, caller = parsed("nexus_async_caller")
    handler = load_history("nexus_async_handler")
    call = nexus_call(caller)
    assert (caller.workflow_type, caller.status, caller.error_type) == (
        "CheckoutWorkflow",
        Status.COMPLETED,
        None,
    )
    assert call.name == "billing-endpoint/BillingService/charge"
    assert (call.endpoint, call.service, call.operation) == (
        "billing-endpoint",
        "BillingService",
        "charge",
    )
    assert (call.status, call.error_type, call.error_message, call.attempt) == (
        Status.COMPLETED,
        None,
        None,
        1,
    )
    assert call.traceparent is not None and TRACEPARENT.match(call.traceparent)
    # The token names the handler workflow the handler's own history describes.
    assert call.operation_token is not None
    assert decode_operation_token(call.operation_token) == (handler.namespace, handler.workflow_id)
    [link] = caller.links
    assert (link.kind, link.source, link.verified) == (
        LinkKind.NEXUS,
        LinkSource.CALLER_HISTORY,
        True,
    )
    assert (link.caller_event_id, link.caller_request_id) == (call.event_id, call.request_id)
    assert_links_to(link, caller, handler)


def test_async_operation_handler() -> None:
    _, caller = parsed("nexus_async_caller")
    handler, run = parsed("nexus_async_handler")
    call = nexus_call(caller)
    assert (run.workflow_type, run.status) == ("ChargeWorkflow", Status.COMPLETED)
    assert run.parent_workflow_id is None  # Nexus handlers have no parent, only callers
    [activity] = run.calls
    # The gateway was busy on the first attempt: the retry succeeded, and no error is left.
    assert (activity.kind, activity.name, activity.activity_id) == (
        NodeKind.ACTIVITY,
        "capture_payment",
        "1",
    )
    assert (activity.attempt, activity.status, activity.error_type) == (2, Status.COMPLETED, None)
    # The completion callback points back at the caller's NexusOperationScheduled event.
    callback = only(run.links, source=LinkSource.HANDLER_HISTORY)
    assert (callback.kind, callback.caller_event_id, callback.verified) == (
        LinkKind.NEXUS,
        call.event_id,
        True,
    )
    assert_links_to(callback, caller, handler)
    # The handler's tracing client wrote the server-verified caller into the start header.
    header = only(run.links, source=LinkSource.HEADER)
    assert (header.kind, header.caller_event_id, header.caller_request_id, header.verified) == (
        LinkKind.NEXUS,
        call.event_id,
        call.request_id,
        True,
    )
    assert_links_to(header, caller, handler)
    assert len(run.links) == 2


def test_a_history_cut_mid_call_reads_the_call_as_running() -> None:
    recorded = load_history("nexus_async_caller")
    [started] = events_of(recorded, EventType.EVENT_TYPE_NEXUS_OPERATION_STARTED)
    run = recorded.parse(recorded.events[: started.event_id])
    call = nexus_call(run)
    assert (run.status, run.close_time, run.history_length) == (
        Status.RUNNING,
        None,
        started.event_id,
    )
    assert (call.status, call.end_time) == (Status.RUNNING, None)
    assert call.operation_token and len(run.links) == 1  # the edge is known once started


def test_sync_operations_leave_no_link_and_no_token() -> None:
    _, caller = parsed("nexus_sync_caller")
    quoted, refused = caller.calls
    assert [call.name for call in caller.calls] == ["billing-endpoint/BillingService/quote"] * 2
    assert (quoted.status, quoted.error_type, quoted.operation_token) == (
        Status.COMPLETED,
        None,
        None,
    )
    # A non-retryable application error in the handler: its own type and message, not the
    # "handler failed" wrapper the server puts around it.
    assert (refused.status, refused.error_type, refused.error_message) == (
        Status.FAILED,
        "QuoteRefused",
        "no quote for quote-refused",
    )
    assert refused.operation_token is None
    assert quoted.request_id and refused.request_id and quoted.request_id != refused.request_id
    assert caller.links == []
    assert caller.status == Status.COMPLETED  # the checkout noted the refusal and went on


def test_failed_operation_names_the_handlers_error() -> None:
    _, caller = parsed("nexus_failed_caller")
    handler, run = parsed("nexus_failed_handler")
    call = nexus_call(caller)
    declined = ("CardDeclined", "card for declined declined")
    assert (run.status, run.error_type, run.error_message) == (Status.FAILED, *declined)
    assert run.calls == []
    assert (call.status, call.error_type, call.error_message) == (Status.FAILED, *declined)
    # The caller failed too; its own CheckoutFailed wraps the handler's error, and the
    # deepest application error is the one that says what went wrong.
    assert (caller.status, caller.error_type, caller.error_message) == (Status.FAILED, *declined)
    assert_links_to(only(caller.links, source=LinkSource.CALLER_HISTORY), caller, handler)
    assert_links_to(only(run.links, source=LinkSource.HANDLER_HISTORY), caller, handler)


def test_failure_kinds_of_a_declined_card_and_a_timeout() -> None:
    """A card the handler declined on purpose is a business failure on every node that
    carries it; a call the caller stopped waiting for is a timeout."""
    _, caller = parsed("nexus_failed_caller")
    _, run = parsed("nexus_failed_handler")
    assert run.error_kind == ErrorKind.BUSINESS
    assert nexus_call(caller).error_kind == ErrorKind.BUSINESS
    _, slow = parsed("nexus_timeout_caller")
    assert nexus_call(slow).error_kind == ErrorKind.TIMEOUT


def _failure(*layers: Failure) -> Failure:
    """``layers[0]`` caused by ``layers[1]``, caused by ``layers[2]``..."""
    for outer, inner in itertools.pairwise(reversed(layers)):
        inner.cause.CopyFrom(outer)
    return layers[0]


def _app(kind: str, non_retryable: bool = False) -> Failure:
    info = ApplicationFailureInfo(type=kind, non_retryable=non_retryable)
    return Failure(message=kind, application_failure_info=info)


def _activity(state: RetryState.ValueType) -> Failure:
    return Failure(message="activity failed", activity_failure_info={"retry_state": state})


RAN_OUT = RetryState.RETRY_STATE_MAXIMUM_ATTEMPTS_REACHED
REFUSED = RetryState.RETRY_STATE_NON_RETRYABLE_FAILURE


@pytest.mark.parametrize(
    ("failure", "retry_state", "kind"),
    [
        (_app("CardDeclined", non_retryable=True), 0, ErrorKind.BUSINESS),
        # A type the retry policy lists as non-retryable.
        (_failure(_activity(REFUSED), _app("OutOfStock")), 0, ErrorKind.BUSINESS),
        (_failure(_activity(RAN_OUT), _app("ConnectionError")), 0, ErrorKind.INFRASTRUCTURE),
        (_app("ConnectionError"), RAN_OUT, ErrorKind.INFRASTRUCTURE),
        (_app("PanicError"), 0, ErrorKind.INFRASTRUCTURE),
        # Raised by a workflow, which does not retry: its own decision.
        (_app("PaymentFailed"), 0, ErrorKind.BUSINESS),
        (
            Failure(timeout_failure_info={"timeout_type": TimeoutType.TIMEOUT_TYPE_HEARTBEAT}),
            0,
            ErrorKind.INFRASTRUCTURE,
        ),
        (
            Failure(timeout_failure_info={"timeout_type": TimeoutType.TIMEOUT_TYPE_START_TO_CLOSE}),
            0,
            ErrorKind.TIMEOUT,
        ),
        (Failure(nexus_handler_failure_info={"type": "NOT_FOUND"}), 0, ErrorKind.NOT_FOUND),
        (Failure(nexus_handler_failure_info={"type": "UNAUTHORIZED"}), 0, ErrorKind.UNAUTHORIZED),
        (Failure(nexus_handler_failure_info={"type": "INTERNAL"}), 0, ErrorKind.INFRASTRUCTURE),
        (Failure(canceled_failure_info={}), 0, ErrorKind.CANCELED),
        (Failure(server_failure_info={}), 0, ErrorKind.INFRASTRUCTURE),
    ],
)
def test_failure_kinds(failure: Failure, retry_state: int, kind: ErrorKind) -> None:
    assert failure_kind(failure, retry_state) == kind


def test_timed_out_operation() -> None:
    _, caller = parsed("nexus_timeout_caller")
    handler, run = parsed("nexus_timeout_handler")
    call = nexus_call(caller)
    assert (call.status, call.error_type, call.error_message) == (
        Status.TIMED_OUT,
        "TimeoutError",
        "operation timed out",
    )
    assert call.end_time is not None
    # The handler started in time, so the edge is there, and it ran on after the caller
    # stopped waiting.
    assert_links_to(only(caller.links), caller, handler)
    assert_links_to(only(run.links, source=LinkSource.HANDLER_HISTORY), caller, handler)
    assert run.status == Status.COMPLETED
    assert run.close_time is not None and run.close_time > call.end_time
    assert caller.status == Status.COMPLETED


def test_a_second_caller_attaches_to_the_running_handler() -> None:
    _, first = parsed("nexus_attach_first_caller")
    _, second = parsed("nexus_attach_second_caller")
    handler, run = parsed("nexus_attach_handler")
    first_call, second_call = nexus_call(first), nexus_call(second)
    # Both calls got the same workflow: same token, same handler run.
    assert first_call.operation_token == second_call.operation_token
    assert decode_operation_token(first_call.operation_token or "") == (
        handler.namespace,
        handler.workflow_id,
    )
    for caller in (first, second):
        assert_links_to(only(caller.links), caller, handler)
    # The handler's history names both: the starter in its start event, the second caller
    # in the options update that attached its callback (with its request id).
    [updated] = events_of(handler, EventType.EVENT_TYPE_WORKFLOW_EXECUTION_OPTIONS_UPDATED)
    assert updated.workflow_execution_options_updated_event_attributes.attached_request_id
    callbacks = [link for link in run.links if link.source == LinkSource.HANDLER_HISTORY]
    assert sorted(link.caller_workflow_id for link in callbacks) == [
        "checkout-first",
        "checkout-second",
    ]
    starter = only(callbacks, caller_run_id=first.run_id)
    attached = only(callbacks, caller_run_id=second.run_id)
    assert starter.caller_event_id == first_call.event_id
    assert (attached.caller_event_id, attached.caller_request_id) == (
        second_call.event_id,
        second_call.request_id,
    )
    for link in (starter, attached):
        assert_links_to(link, first if link is starter else second, handler)
    # Only the starter's client wrote a start header.
    assert only(run.links, source=LinkSource.HEADER).caller_run_id == first.run_id


def test_operation_token_is_the_fallback_when_history_has_no_links() -> None:
    recorded = load_history("nexus_async_caller")
    handler = load_history("nexus_async_handler")
    run = recorded.parse(strip_links(recorded.events))
    call = nexus_call(run)
    [link] = run.links
    assert (link.kind, link.source) == (LinkKind.NEXUS, LinkSource.OPERATION_TOKEN)
    assert (link.handler_namespace, link.handler_workflow_id, link.handler_run_id) == (
        handler.namespace,
        handler.workflow_id,
        "",  # the token names a workflow, not a run: the store resolves it
    )
    assert (link.caller_event_id, link.caller_request_id) == (call.event_id, call.request_id)


def test_operation_tokens_that_are_not_workflow_tokens() -> None:
    assert operation_token_json("not base64 json!") is None
    assert decode_operation_token("WzEsMl0") is None  # base64url of "[1,2]"
    assert decode_operation_token("eyJ0IjoxfQ") is None  # {"t":1}: no namespace, no id


# --- activity wrappers ------------------------------------------------------------------


def test_activity_wrapper_headers_name_the_calling_activity() -> None:
    _, caller = parsed("wrapper_caller")
    assert [(c.kind, c.name, c.activity_id) for c in caller.calls] == [
        (NodeKind.ACTIVITY, "reserve_via_api", "1"),
        (NodeKind.ACTIVITY, "reserve_via_api", "2"),
    ]
    assert caller.links == []  # nothing in the caller's history says what the API started
    for name, activity_id, verified in (
        ("wrapper_signed_handler", "1", True),
        ("wrapper_unsigned_handler", "2", False),
    ):
        handler, run = parsed(name)
        [link] = run.links
        assert (link.kind, link.source, link.caller_activity_id, link.verified) == (
            LinkKind.ACTIVITY_WRAPPER,
            LinkSource.HEADER,
            activity_id,
            verified,
        ), name
        assert (link.caller_event_id, link.caller_request_id) == (0, "")
        assert_links_to(link, caller, handler)
        assert [call.name for call in run.calls] == ["pick_items"]


def test_a_header_signed_with_another_key_is_not_trusted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(LINK_KEY_ENV, "another-deployments-key")
    [link] = load_history("wrapper_signed_handler").parse().links
    assert link.verified is False


def test_a_header_of_a_kind_no_link_has_does_not_break_the_history() -> None:
    recorded = load_history("wrapper_signed_handler")
    events = [HistoryEvent() for _ in recorded.events]
    for copy, event in zip(events, recorded.events, strict=True):
        copy.CopyFrom(event)
    [link] = recorded.parse().links
    claim = CallerInfo(
        kind="child_workflow",
        namespace=link.caller_namespace,
        workflow_id=link.caller_workflow_id,
        run_id=link.caller_run_id,
    )
    header = events[0].workflow_execution_started_event_attributes.header
    header.fields[CALLER_HEADER].CopyFrom(encode_caller_header(claim))
    run = recorded.parse(events)
    assert (run.status, [call.name for call in run.calls]) == (Status.COMPLETED, ["pick_items"])


# --- messages sent through a wrapper ----------------------------------------------------


def test_signal_and_update_through_a_wrapper() -> None:
    _, sender = parsed("message_sender")
    target, run = parsed("message_target")
    [activity] = sender.calls
    assert (activity.name, activity.activity_id) == ("notify_mailbox", "1")
    [signaled] = events_of(target, EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED)
    [accepted] = events_of(target, EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED)
    signal = only(run.links, kind=LinkKind.SIGNAL)
    update = only(run.links, kind=LinkKind.UPDATE)
    for link, name, event in ((signal, "deposit", signaled), (update, "count", accepted)):
        assert (link.source, link.detail, link.caller_activity_id, link.verified) == (
            LinkSource.HEADER,
            name,
            activity.activity_id,
            True,
        )
        # The edge points at the target's event that recorded the message, and its time.
        assert link.target_event_id == event.event_id
        assert link.event_time == event.event_time.ToDatetime(tzinfo=run.start_time.tzinfo)
        assert_links_to(link, sender, target)
        assert link.kind not in STARTING_LINKS  # a message never makes a parent
    assert len(run.links) == 2
    assert sender.links == []


# --- children, continued-as-new, terminated ---------------------------------------------


def test_children_hang_by_both_histories() -> None:
    _, parent = parsed("child_parent")
    assert [(c.kind, c.name, c.status) for c in parent.calls] == [
        (NodeKind.CHILD_WORKFLOW, "ChildWorkflow", Status.COMPLETED),
        (NodeKind.CHILD_WORKFLOW, "ChildWorkflow", Status.FAILED),
    ]
    assert (parent.calls[1].error_type, parent.calls[1].error_message) == (
        "LeafError",
        "leaf failed",
    )
    for call, name in zip(parent.calls, ("child_completed", "child_failed"), strict=True):
        child, run = parsed(name)
        link = only(parent.links, caller_event_id=call.event_id)
        assert (link.kind, link.source) == (LinkKind.CHILD, LinkSource.CALLER_HISTORY)
        assert_links_to(link, parent, child)
        # The child's own start event names its parent and the initiating event.
        assert (run.parent_namespace, run.parent_workflow_id, run.parent_run_id) == (
            parent.namespace,
            parent.workflow_id,
            parent.run_id,
        )
        assert run.parent_event_id == call.event_id
        assert run.links == []
    _, failed = parsed("child_failed")
    assert (failed.status, failed.error_type, failed.error_message) == (
        Status.FAILED,
        "LeafError",
        "leaf failed",
    )
    [leaf] = failed.calls
    assert (leaf.status, leaf.error_type, leaf.attempt) == (Status.FAILED, "LeafError", 1)


def test_continued_as_new_runs_are_two_runs_of_one_workflow() -> None:
    _, first = parsed("continued_first_run")
    _, second = parsed("continued_second_run")
    assert first.workflow_id == second.workflow_id and first.run_id != second.run_id
    # A continued-as-new run is over (the contract has no status for "went on elsewhere").
    assert (first.status, first.error_type) == (Status.COMPLETED, None)
    assert first.close_time is not None and second.start_time >= first.close_time
    assert second.status == Status.COMPLETED
    assert first.links == second.links == [] and first.calls == second.calls == []


def test_terminated_run_keeps_the_reason() -> None:
    _, run = parsed("terminated")
    assert (run.status, run.error_type, run.error_message) == (
        Status.TERMINATED,
        "TerminatedError",
        "operator gave up on it",
    )


def test_timers_and_signals_become_waits() -> None:
    """What a gap in a lane is labeled with: each timer (from start to fire or cancel) and
    each signal received, at the times the history gives."""
    for name in fixture_names():
        recorded, run = parsed(name)
        started = events_of(recorded, EventType.EVENT_TYPE_TIMER_STARTED)
        ended = {
            event.timer_fired_event_attributes.started_event_id
            or event.timer_canceled_event_attributes.started_event_id: event
            for event in [
                *events_of(recorded, EventType.EVENT_TYPE_TIMER_FIRED),
                *events_of(recorded, EventType.EVENT_TYPE_TIMER_CANCELED),
            ]
        }
        timers = [wait for wait in run.waits if wait.kind == "timer"]
        assert [wait.event_id for wait in timers] == [event.event_id for event in started], name
        for wait, event in zip(timers, started, strict=True):
            timeout = event.timer_started_event_attributes.start_to_fire_timeout
            assert wait.detail == f"{timeout.ToTimedelta().total_seconds():g} s"
            assert wait.start_time == event.event_time.ToDatetime(tzinfo=UTC)
            end = ended.get(event.event_id)
            assert wait.end_time == (end.event_time.ToDatetime(tzinfo=UTC) if end else None)
        signals = [wait.detail for wait in run.waits if wait.kind == "signal"]
        assert signals == [
            event.workflow_execution_signaled_event_attributes.signal_name
            for event in events_of(recorded, EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED)
        ], name
