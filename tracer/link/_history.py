"""Read one workflow history into the facts the store keeps: the run, its calls, its links.

Pure functions over ``temporalio.api.history.v1.HistoryEvent`` protos: no I/O, so the
linker and the tests share them, and a recorded history always parses the same way.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from temporalio.api.common.v1 import Link as LinkProto
from temporalio.api.common.v1 import Payload
from temporalio.api.enums.v1 import EventType, RetryState, TimeoutType
from temporalio.api.failure.v1 import Failure
from temporalio.api.history.v1 import HistoryEvent

from interceptors import CALLER_HEADER, decode_caller_header
from tracer.domain import ErrorKind, LinkKind, LinkSource, NodeKind, Status, classify_error
from tracer.store import CallFacts, LinkFacts, RunFacts, WaitFacts

__all__ = [
    "decode_operation_token",
    "describe_failure",
    "failure_kind",
    "failure_type",
    "operation_token_json",
    "parse_history",
]


_E = EventType

_WORKFLOW_CLOSE = {
    _E.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED: Status.COMPLETED,
    _E.EVENT_TYPE_WORKFLOW_EXECUTION_FAILED: Status.FAILED,
    _E.EVENT_TYPE_WORKFLOW_EXECUTION_TIMED_OUT: Status.TIMED_OUT,
    _E.EVENT_TYPE_WORKFLOW_EXECUTION_CANCELED: Status.CANCELED,
    _E.EVENT_TYPE_WORKFLOW_EXECUTION_TERMINATED: Status.TERMINATED,
    # A continued-as-new run is over; the next run carries on under the same workflow id.
    _E.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW: Status.COMPLETED,
}

# Close events of calls: event type -> (attribute field, status).
_CALL_CLOSE = {
    _E.EVENT_TYPE_ACTIVITY_TASK_COMPLETED: (
        "activity_task_completed_event_attributes",
        Status.COMPLETED,
    ),
    _E.EVENT_TYPE_ACTIVITY_TASK_FAILED: ("activity_task_failed_event_attributes", Status.FAILED),
    _E.EVENT_TYPE_ACTIVITY_TASK_TIMED_OUT: (
        "activity_task_timed_out_event_attributes",
        Status.TIMED_OUT,
    ),
    _E.EVENT_TYPE_ACTIVITY_TASK_CANCELED: (
        "activity_task_canceled_event_attributes",
        Status.CANCELED,
    ),
    _E.EVENT_TYPE_NEXUS_OPERATION_COMPLETED: (
        "nexus_operation_completed_event_attributes",
        Status.COMPLETED,
    ),
    _E.EVENT_TYPE_NEXUS_OPERATION_FAILED: (
        "nexus_operation_failed_event_attributes",
        Status.FAILED,
    ),
    _E.EVENT_TYPE_NEXUS_OPERATION_TIMED_OUT: (
        "nexus_operation_timed_out_event_attributes",
        Status.TIMED_OUT,
    ),
    _E.EVENT_TYPE_NEXUS_OPERATION_CANCELED: (
        "nexus_operation_canceled_event_attributes",
        Status.CANCELED,
    ),
    _E.EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_COMPLETED: (
        "child_workflow_execution_completed_event_attributes",
        Status.COMPLETED,
    ),
    _E.EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_FAILED: (
        "child_workflow_execution_failed_event_attributes",
        Status.FAILED,
    ),
    _E.EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_TIMED_OUT: (
        "child_workflow_execution_timed_out_event_attributes",
        Status.TIMED_OUT,
    ),
    _E.EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_CANCELED: (
        "child_workflow_execution_canceled_event_attributes",
        Status.CANCELED,
    ),
    _E.EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_TERMINATED: (
        "child_workflow_execution_terminated_event_attributes",
        Status.TERMINATED,
    ),
    _E.EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_FAILED: (
        "start_child_workflow_execution_failed_event_attributes",
        Status.FAILED,
    ),
    _E.EVENT_TYPE_EXTERNAL_WORKFLOW_EXECUTION_SIGNALED: (
        "external_workflow_execution_signaled_event_attributes",
        Status.COMPLETED,
    ),
    _E.EVENT_TYPE_SIGNAL_EXTERNAL_WORKFLOW_EXECUTION_FAILED: (
        "signal_external_workflow_execution_failed_event_attributes",
        Status.FAILED,
    ),
}

# Events that record an update this run received (admitted ones before a worker saw them).
_UPDATE_RECEIVED = {
    _E.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ADMITTED,
    _E.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED,
}

# What a handler link on NexusOperationStarted may point at besides the workflow the
# operation started: the update an update-backed operation sent. That workflow lives in
# its own tree; its own history records the update and who sent it.
_NOT_STARTED_BY_CALL = {
    _E.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ADMITTED,
    _E.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED,
    _E.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_COMPLETED,
    _E.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED,
}

_FAILURE_KINDS = (
    ("application_failure_info", None),
    ("timeout_failure_info", "TimeoutError"),
    ("canceled_failure_info", "CanceledError"),
    ("terminated_failure_info", "TerminatedError"),
    ("server_failure_info", "ServerError"),
)


def _time(event: HistoryEvent) -> datetime:
    return event.event_time.ToDatetime(tzinfo=UTC)


def failure_type(failure: Failure) -> str:
    """The type of one failure (not its causes): an application error's own type, a Nexus
    handler error as the interceptors name it, else the failure's kind."""
    if failure.HasField("application_failure_info"):
        return failure.application_failure_info.type or "ApplicationError"
    if failure.HasField("nexus_handler_failure_info"):
        # Named as the interceptors name it, so both classify alike.
        return f"HandlerError.{failure.nexus_handler_failure_info.type}"
    for info, kind in _FAILURE_KINDS:
        if kind and failure.HasField(info):  # type: ignore[arg-type]
            return kind
    return "Error"


def describe_failure(failure: Failure) -> tuple[str, str]:
    """``(type, message)`` of the most telling failure in a cause chain.

    The deepest application failure names what went wrong on the far side (a declined
    card, not "nexus operation completed unsuccessfully"); otherwise the innermost
    failure of a known kind (handler error, timeout, cancel...) is used.
    """
    chain = _chain(failure)
    for item in reversed(chain):
        if item.HasField("application_failure_info"):
            return failure_type(item), item.message
    for item in reversed(chain):
        kind = failure_type(item)
        if kind != "Error":
            return kind, item.message
    return "Error", failure.message


# Retry states that mean a retryable failure ran out of attempts (or of time to retry).
_RAN_OUT = {
    RetryState.RETRY_STATE_MAXIMUM_ATTEMPTS_REACHED,
    RetryState.RETRY_STATE_TIMEOUT,
    RetryState.RETRY_STATE_INTERNAL_SERVER_ERROR,
}


def _chain(failure: Failure) -> list[Failure]:
    chain: list[Failure] = []
    current: Failure | None = failure
    while current is not None and len(chain) < 32:
        chain.append(current)
        current = current.cause if current.HasField("cause") else None
    return chain


def failure_kind(failure: Failure, retry_state: int = 0) -> ErrorKind:
    """What kind of failure a person would call this (see :class:`ErrorKind`).

    A non-retryable application error anywhere in the cause chain (the handler or one of
    its activities said no on purpose) is a business failure; a timeout is a timeout,
    unless it is a heartbeat timeout (the worker died); an application error that was
    retried until its attempts ran out, a panic, or a server error is infrastructure.

    Args:
        failure: The failure a close event recorded.
        retry_state: The ``retry_state`` of that event, when it has one.
    """
    chain = _chain(failure)
    states = {retry_state}
    for item in chain:
        if item.HasField("activity_failure_info"):
            states.add(item.activity_failure_info.retry_state)
        if item.HasField("child_workflow_execution_failure_info"):
            states.add(item.child_workflow_execution_failure_info.retry_state)
    applications = [i for i in chain if i.HasField("application_failure_info")]
    if any(i.application_failure_info.type == "PanicError" for i in applications):
        return ErrorKind.INFRASTRUCTURE
    if any(i.application_failure_info.non_retryable for i in applications) or (
        applications and RetryState.RETRY_STATE_NON_RETRYABLE_FAILURE in states
    ):
        return ErrorKind.BUSINESS
    for item in chain:
        if item.HasField("timeout_failure_info"):
            heartbeat = item.timeout_failure_info.timeout_type == TimeoutType.TIMEOUT_TYPE_HEARTBEAT
            return ErrorKind.INFRASTRUCTURE if heartbeat else ErrorKind.TIMEOUT
    for item in reversed(chain):
        if item.HasField("nexus_handler_failure_info"):
            kind = classify_error(
                Status.FAILED, f"HandlerError.{item.nexus_handler_failure_info.type}"
            )
            if kind in (ErrorKind.NOT_FOUND, ErrorKind.UNAUTHORIZED, ErrorKind.TIMEOUT):
                return kind
            if not applications:
                return ErrorKind.INFRASTRUCTURE
        if item.HasField("canceled_failure_info"):
            return ErrorKind.CANCELED
        if item.HasField("terminated_failure_info"):
            return ErrorKind.TERMINATED
        if item.HasField("server_failure_info"):
            return ErrorKind.INFRASTRUCTURE
    if applications:
        # Retried until its attempts ran out: something kept breaking. Raised once by a
        # workflow (workflows do not retry): its decision.
        return ErrorKind.INFRASTRUCTURE if states & _RAN_OUT else ErrorKind.BUSINESS
    return ErrorKind.OPERATION_ERROR


# The ``t`` of a token that names the workflow run an operation started.
_WORKFLOW_TOKEN = 1


def operation_token_json(token: str) -> dict[str, Any] | None:
    """The JSON object inside a Nexus operation token (base64url), when it is one."""
    try:
        data = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        return None
    return data if isinstance(data, dict) else None


def decode_operation_token(token: str) -> tuple[str, str] | None:
    """``(namespace, workflow_id)`` from a workflow-run operation token, or ``None``.

    The token is base64url JSON (``{"t":1,"ns":...,"wid":...}``): a fallback when no
    history link names the handler workflow. Tokens of other kinds (``t`` 2: an activity,
    3: an update sent to a workflow that lives on in its own tree) give ``None``.
    """
    data = operation_token_json(token)
    if data is None or data.get("t", _WORKFLOW_TOKEN) != _WORKFLOW_TOKEN:
        return None
    namespace, workflow_id = data.get("ns"), data.get("wid")
    if isinstance(namespace, str) and isinstance(workflow_id, str) and namespace and workflow_id:
        return namespace, workflow_id
    return None


def _caller_links(
    run: RunFacts,
    links: Iterable[LinkProto],
    *,
    kind: LinkKind = LinkKind.NEXUS,
    request_id: str = "",
    detail: str = "",
    event: HistoryEvent | None = None,
) -> None:
    """Record the callers that handler-side links point back to.

    A Nexus handler's requests carry the caller's ``NexusOperationScheduled`` event as a
    link, and the server writes it beside what the request made here: the completion
    callbacks of a workflow it started, or the signal or update it sent (``kind``, with
    its name as ``detail`` and ``event`` the event that recorded it).
    """
    for link in links:
        if not link.HasField("workflow_event"):
            continue
        caller = link.workflow_event
        event_id = caller.event_ref.event_id if caller.HasField("event_ref") else 0
        ref_request_id = (
            caller.request_id_ref.request_id if caller.HasField("request_id_ref") else request_id
        )
        run.links.append(
            LinkFacts(
                kind=kind,
                source=LinkSource.HANDLER_HISTORY,
                caller_namespace=caller.namespace,
                caller_workflow_id=caller.workflow_id,
                caller_run_id=caller.run_id,
                caller_event_id=event_id,
                caller_request_id=ref_request_id,
                handler_namespace=run.namespace,
                handler_workflow_id=run.workflow_id,
                handler_run_id=run.run_id,
                detail=detail,
                target_event_id=event.event_id if event is not None else 0,
                event_time=_time(event) if event is not None else None,
            )
        )


# How a caller header's kind (the interceptors' CallerKind) maps onto the edge it makes.
_CLAIMED_KINDS = {
    "nexus": LinkKind.NEXUS,
    "activity_wrapper": LinkKind.ACTIVITY_WRAPPER,
    "child_workflow": LinkKind.CHILD,
}


def _header_link(
    run: RunFacts,
    payload: Payload,
    *,
    kind: LinkKind | None = None,
    detail: str = "",
    event: HistoryEvent | None = None,
) -> None:
    """Record the caller that a client wrote into a header of this run's history.

    This is how an activity wrapper becomes a durable edge: the API server's client
    interceptor writes the HTTP caller's identity (and whether its claim was signed) into
    the header of the workflow it starts, or of the signal or update it sends.
    """
    caller = decode_caller_header(payload)
    if caller is None or not caller.run_id:
        return
    run.links.append(
        LinkFacts(
            kind=kind or _CLAIMED_KINDS.get(caller.kind, LinkKind.ACTIVITY_WRAPPER),
            source=LinkSource.HEADER,
            caller_namespace=caller.namespace,
            caller_workflow_id=caller.workflow_id,
            caller_run_id=caller.run_id,
            caller_event_id=caller.event_id or 0,
            caller_request_id=caller.request_id or "",
            caller_activity_id=caller.activity_id or "",
            handler_namespace=run.namespace,
            handler_workflow_id=run.workflow_id,
            handler_run_id=run.run_id,
            verified=caller.verified,
            detail=detail,
            target_event_id=event.event_id if event is not None else 0,
            event_time=_time(event) if event is not None else None,
        )
    )


@dataclass
class _ParseState:
    """What the event handlers share while one history is read."""

    run: RunFacts
    # Calls by the id of the event that scheduled (or initiated) them.
    calls: dict[int, CallFacts] = field(default_factory=dict)
    # Updates whose senders are recorded: admitted and then accepted is one update.
    updates: set[str] = field(default_factory=set)
    # Timers by the id of the event that started them (they end later).
    timers: dict[int, WaitFacts] = field(default_factory=dict)

    def link_out(
        self, call: CallFacts, kind: LinkKind, source: LinkSource, target: tuple[str, str, str]
    ) -> None:
        """Record an edge from one of this run's calls to ``(namespace, wid, run id)``."""
        self.run.links.append(
            LinkFacts(
                kind=kind,
                source=source,
                caller_namespace=self.run.namespace,
                caller_workflow_id=self.run.workflow_id,
                caller_run_id=self.run.run_id,
                caller_event_id=call.event_id,
                caller_request_id=call.request_id or "",
                handler_namespace=target[0],
                handler_workflow_id=target[1],
                handler_run_id=target[2],
            )
        )


def _on_workflow_started(state: _ParseState, event: HistoryEvent) -> None:
    """The run itself: type, queue, start, parent, and the callers its start names."""
    run = state.run
    attrs = event.workflow_execution_started_event_attributes
    run.workflow_type = attrs.workflow_type.name
    run.task_queue = attrs.task_queue.name
    run.start_time = _time(event)
    if attrs.HasField("parent_workflow_execution"):
        run.parent_namespace = attrs.parent_workflow_namespace or run.namespace
        run.parent_workflow_id = attrs.parent_workflow_execution.workflow_id
        run.parent_run_id = attrs.parent_workflow_execution.run_id
        run.parent_event_id = attrs.parent_initiated_event_id
    for callback in attrs.completion_callbacks:
        _caller_links(run, callback.links)
    _caller_links(run, event.links)
    if CALLER_HEADER in attrs.header.fields:
        _header_link(run, attrs.header.fields[CALLER_HEADER])


def _on_message(state: _ParseState, event: HistoryEvent) -> None:
    """Signals and updates sent to this run (through a client whose caller header names
    the sender, or by a Nexus handler, which the event's links name), and callers that
    attached."""
    run = state.run
    if event.event_type == _E.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED:
        signaled = event.workflow_execution_signaled_event_attributes
        if CALLER_HEADER in signaled.header.fields:
            _header_link(
                run,
                signaled.header.fields[CALLER_HEADER],
                kind=LinkKind.SIGNAL,
                detail=signaled.signal_name,
                event=event,
            )
        _caller_links(
            run, event.links, kind=LinkKind.SIGNAL, detail=signaled.signal_name, event=event
        )
        run.waits.append(
            WaitFacts(event.event_id, "signal", _time(event), _time(event), signaled.signal_name)
        )
    elif event.event_type in _UPDATE_RECEIVED:
        if event.event_type == _E.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED:
            update = event.workflow_execution_update_accepted_event_attributes.accepted_request
        else:
            update = event.workflow_execution_update_admitted_event_attributes.request
        if update.meta.update_id in state.updates:
            return
        state.updates.add(update.meta.update_id)
        run.waits.append(
            WaitFacts(event.event_id, "update", _time(event), _time(event), update.input.name)
        )
        if CALLER_HEADER in update.input.header.fields:
            _header_link(
                run,
                update.input.header.fields[CALLER_HEADER],
                kind=LinkKind.UPDATE,
                detail=update.input.name,
                event=event,
            )
        _caller_links(run, event.links, kind=LinkKind.UPDATE, detail=update.input.name, event=event)
    else:  # options updated: another Nexus caller attached to this running workflow
        attrs = event.workflow_execution_options_updated_event_attributes
        for callback in attrs.attached_completion_callbacks:
            _caller_links(run, callback.links, request_id=attrs.attached_request_id)


def _on_workflow_closed(state: _ParseState, event: HistoryEvent) -> None:
    """How the run ended, and why when it did not complete."""
    run = state.run
    run.status = _WORKFLOW_CLOSE[event.event_type]
    run.close_time = _time(event)
    if event.event_type == _E.EVENT_TYPE_WORKFLOW_EXECUTION_FAILED:
        attrs = event.workflow_execution_failed_event_attributes
        run.error_type, run.error_message = describe_failure(attrs.failure)
        run.error_kind = failure_kind(attrs.failure, attrs.retry_state)
    elif event.event_type == _E.EVENT_TYPE_WORKFLOW_EXECUTION_TIMED_OUT:
        run.error_type, run.error_message = "TimeoutError", "workflow execution timed out"
        run.error_kind = ErrorKind.TIMEOUT
    elif event.event_type == _E.EVENT_TYPE_WORKFLOW_EXECUTION_TERMINATED:
        reason = event.workflow_execution_terminated_event_attributes.reason
        run.error_type, run.error_message = "TerminatedError", reason or Status.TERMINATED
        run.error_kind = ErrorKind.TERMINATED


def _on_activity(state: _ParseState, event: HistoryEvent) -> None:
    """An activity scheduled, or started (written with its attempt and last failure)."""
    if event.event_type == _E.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
        attrs = event.activity_task_scheduled_event_attributes
        state.calls[event.event_id] = CallFacts(
            event_id=event.event_id,
            kind=NodeKind.ACTIVITY,
            name=attrs.activity_type.name,
            start_time=_time(event),
            activity_id=attrs.activity_id,
        )
        return
    started = event.activity_task_started_event_attributes
    call = state.calls.get(started.scheduled_event_id)
    if call is not None:
        call.attempt = started.attempt or 1
        if call.attempt > 1:
            # From scheduling to the last attempt's start: failed attempts and backoff.
            state.run.waits.append(
                WaitFacts(
                    event.event_id,
                    "retry",
                    call.start_time,
                    _time(event),
                    f"{call.name}: attempt {call.attempt}",
                )
            )
        if started.HasField("last_failure"):
            call.error_type, call.error_message = describe_failure(started.last_failure)


def _on_nexus_operation(state: _ParseState, event: HistoryEvent) -> None:
    """A Nexus operation scheduled, or started (async: its token and handler link)."""
    if event.event_type == _E.EVENT_TYPE_NEXUS_OPERATION_SCHEDULED:
        attrs = event.nexus_operation_scheduled_event_attributes
        state.calls[event.event_id] = CallFacts(
            event_id=event.event_id,
            kind=NodeKind.NEXUS_OPERATION,
            name=f"{attrs.endpoint}/{attrs.service}/{attrs.operation}",
            start_time=_time(event),
            endpoint=attrs.endpoint,
            service=attrs.service,
            operation=attrs.operation,
            request_id=attrs.request_id or None,
            traceparent=attrs.nexus_header.get("traceparent"),
        )
        return
    started = event.nexus_operation_started_event_attributes
    call = state.calls.get(started.scheduled_event_id)
    if call is None:
        return
    call.operation_token = started.operation_token or started.operation_id or None
    linked = False
    for link in event.links:
        if not link.HasField("workflow_event") or _linked_event_type(link) in _NOT_STARTED_BY_CALL:
            continue
        handler = link.workflow_event
        target = (handler.namespace, handler.workflow_id, handler.run_id)
        state.link_out(call, LinkKind.NEXUS, LinkSource.CALLER_HISTORY, target)
        linked = True
    token_target = decode_operation_token(call.operation_token or "")
    if not linked and token_target is not None:
        # No link in history (older servers): the token still names the workflow;
        # its run is resolved later from the store.
        state.link_out(call, LinkKind.NEXUS, LinkSource.OPERATION_TOKEN, (*token_target, ""))


def _linked_event_type(link: LinkProto) -> EventType.ValueType:
    """The type of the event a ``workflow_event`` link points at (by event or request id)."""
    target = link.workflow_event
    if target.HasField("event_ref"):
        return target.event_ref.event_type
    if target.HasField("request_id_ref"):
        return target.request_id_ref.event_type
    return _E.EVENT_TYPE_UNSPECIFIED


def _on_child_workflow(state: _ParseState, event: HistoryEvent) -> None:
    """A child workflow initiated, or started (which names the child's run)."""
    if event.event_type == _E.EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_INITIATED:
        attrs = event.start_child_workflow_execution_initiated_event_attributes
        state.calls[event.event_id] = CallFacts(
            event_id=event.event_id,
            kind=NodeKind.CHILD_WORKFLOW,
            name=attrs.workflow_type.name,
            start_time=_time(event),
        )
        return
    started = event.child_workflow_execution_started_event_attributes
    call = state.calls.get(started.initiated_event_id)
    if call is not None:
        child = started.workflow_execution
        target = (started.namespace or state.run.namespace, child.workflow_id, child.run_id)
        state.link_out(call, LinkKind.CHILD, LinkSource.CALLER_HISTORY, target)


def _on_external_signal(state: _ParseState, event: HistoryEvent) -> None:
    """A signal this workflow sends another one (its outcome is a call close event)."""
    attrs = event.signal_external_workflow_execution_initiated_event_attributes
    state.calls[event.event_id] = CallFacts(
        event_id=event.event_id,
        kind=NodeKind.SIGNAL,
        name=attrs.signal_name,
        start_time=_time(event),
    )


def _on_call_closed(state: _ParseState, event: HistoryEvent) -> None:
    """How a call ended: its status, end time and error."""
    field_name, status = _CALL_CLOSE[event.event_type]
    attrs: Any = getattr(event, field_name)
    scheduled = getattr(attrs, "scheduled_event_id", 0) or getattr(attrs, "initiated_event_id", 0)
    call = state.calls.get(scheduled)
    if call is None:
        return
    call.status = status
    call.end_time = _time(event)
    call.error_kind = None
    if status == Status.COMPLETED:
        call.error_type = call.error_message = None
    elif attrs.HasField("failure") if hasattr(attrs, "failure") else False:
        call.error_type, call.error_message = describe_failure(attrs.failure)
        call.error_kind = failure_kind(attrs.failure, getattr(attrs, "retry_state", 0))
    elif status == Status.TIMED_OUT:
        call.error_type, call.error_message = "TimeoutError", "timed out"
        call.error_kind = ErrorKind.TIMEOUT
    elif status == Status.CANCELED:
        call.error_type, call.error_message = "CanceledError", Status.CANCELED
        call.error_kind = ErrorKind.CANCELED
    else:
        call.error_type, call.error_message = "Error", status


def _on_timer(state: _ParseState, event: HistoryEvent) -> None:
    """A timer started, and when it fired or was canceled."""
    if event.event_type == _E.EVENT_TYPE_TIMER_STARTED:
        attrs = event.timer_started_event_attributes
        seconds = attrs.start_to_fire_timeout.ToTimedelta().total_seconds()
        state.timers[event.event_id] = WaitFacts(
            event.event_id, "timer", _time(event), None, f"{seconds:g} s"
        )
        state.run.waits.append(state.timers[event.event_id])
        return
    if event.event_type == _E.EVENT_TYPE_TIMER_FIRED:
        started_id = event.timer_fired_event_attributes.started_event_id
    else:
        started_id = event.timer_canceled_event_attributes.started_event_id
    if (timer := state.timers.get(started_id)) is not None:
        timer.end_time = _time(event)


_Handler = Callable[[_ParseState, HistoryEvent], None]

# Event type -> the handler of its family; events of other types change nothing.
_HANDLERS: dict[EventType.ValueType, _Handler] = {
    _E.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED: _on_workflow_started,
    _E.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED: _on_message,
    _E.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ADMITTED: _on_message,
    _E.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED: _on_message,
    _E.EVENT_TYPE_WORKFLOW_EXECUTION_OPTIONS_UPDATED: _on_message,
    **dict.fromkeys(_WORKFLOW_CLOSE, _on_workflow_closed),
    _E.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED: _on_activity,
    _E.EVENT_TYPE_ACTIVITY_TASK_STARTED: _on_activity,
    _E.EVENT_TYPE_NEXUS_OPERATION_SCHEDULED: _on_nexus_operation,
    _E.EVENT_TYPE_NEXUS_OPERATION_STARTED: _on_nexus_operation,
    _E.EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_INITIATED: _on_child_workflow,
    _E.EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_STARTED: _on_child_workflow,
    _E.EVENT_TYPE_SIGNAL_EXTERNAL_WORKFLOW_EXECUTION_INITIATED: _on_external_signal,
    _E.EVENT_TYPE_TIMER_STARTED: _on_timer,
    _E.EVENT_TYPE_TIMER_FIRED: _on_timer,
    _E.EVENT_TYPE_TIMER_CANCELED: _on_timer,
    **dict.fromkeys(_CALL_CLOSE, _on_call_closed),
}


def parse_history(
    namespace: str, workflow_id: str, run_id: str, events: Iterable[HistoryEvent]
) -> RunFacts:
    """Read a run's events (in order) into :class:`RunFacts`.

    Args:
        namespace: Namespace of the run.
        workflow_id: Workflow id of the run.
        run_id: Run id of the run.
        events: Its history events, in order; a prefix reads as the run so far.

    Returns:
        The run, its calls (by scheduling event id) and the links its history records.
    """
    state = _ParseState(RunFacts(namespace=namespace, workflow_id=workflow_id, run_id=run_id))
    for event in events:
        state.run.history_length = event.event_id
        handler = _HANDLERS.get(event.event_type)
        if handler is not None:
            handler(state, event)
    state.run.calls = sorted(state.calls.values(), key=lambda call: call.event_id)
    return state.run
