"""Span names and attribute keys: the vocabulary the interceptors write and the collector reads.

Span names are those of the SDK's ``temporalio.contrib.opentelemetry`` (``RunWorkflow:X``,
``StartNexusOperation:Svc/op``...), so spans from workers that run the SDK's tracing and
spans from ours are told apart by their attributes, never by their names.
"""

from __future__ import annotations

from typing import Final

__all__ = ["ATTR", "SpanName"]


class SpanName:
    """Prefixes of span names, as the SDK's ``temporalio.contrib.opentelemetry`` names them.

    A span's name is its prefix followed by what it is about: a workflow, activity, signal,
    query or update name, or ``Service/operation`` for Nexus spans
    (``SpanName.RUN_WORKFLOW + "OrderWorkflow"``). The few names without a colon are whole.
    """

    # Clients.
    START_WORKFLOW: Final = "StartWorkflow:"
    SIGNAL_WITH_START_WORKFLOW: Final = "SignalWithStartWorkflow:"
    SIGNAL_WORKFLOW: Final = "SignalWorkflow:"
    QUERY_WORKFLOW: Final = "QueryWorkflow:"
    START_WORKFLOW_UPDATE: Final = "StartWorkflowUpdate:"
    START_UPDATE_WITH_START_WORKFLOW: Final = "StartUpdateWithStartWorkflow:"
    DESCRIBE_WORKFLOW: Final = "DescribeWorkflow"
    CANCEL_WORKFLOW: Final = "CancelWorkflow"
    TERMINATE_WORKFLOW: Final = "TerminateWorkflow"
    # Workers.
    RUN_WORKFLOW: Final = "RunWorkflow:"
    HANDLE_SIGNAL: Final = "HandleSignal:"
    HANDLE_UPDATE: Final = "HandleUpdate:"
    RUN_ACTIVITY: Final = "RunActivity:"
    RUN_START_NEXUS_OPERATION_HANDLER: Final = "RunStartNexusOperationHandler:"
    RUN_CANCEL_NEXUS_OPERATION_HANDLER: Final = "RunCancelNexusOperationHandler:"
    # Calls a workflow makes.
    START_ACTIVITY: Final = "StartActivity:"
    START_CHILD_WORKFLOW: Final = "StartChildWorkflow:"
    START_NEXUS_OPERATION: Final = "StartNexusOperation:"
    SIGNAL_CHILD_WORKFLOW: Final = "SignalChildWorkflow:"
    SIGNAL_EXTERNAL_WORKFLOW: Final = "SignalExternalWorkflow:"
    # The API side of an activity wrapper: ``HTTP POST /reservations``.
    HTTP: Final = "HTTP "


class ATTR:
    """Span attribute keys: ours (``temporal.*``) and those the SDK's tracing writes."""

    NAMESPACE: Final = "temporal.namespace"
    WORKFLOW_ID: Final = "temporal.workflow_id"
    RUN_ID: Final = "temporal.run_id"
    WORKFLOW_TYPE: Final = "temporal.workflow_type"
    TASK_QUEUE: Final = "temporal.task_queue"
    ACTIVITY_TYPE: Final = "temporal.activity_type"
    ACTIVITY_ID: Final = "temporal.activity_id"
    ATTEMPT: Final = "temporal.attempt"
    CHILD_WORKFLOW_ID: Final = "temporal.child.workflow_id"
    CHILD_RUN_ID: Final = "temporal.child.run_id"
    CHILD_NAMESPACE: Final = "temporal.child.namespace"
    TARGET_WORKFLOW_ID: Final = "temporal.target.workflow_id"
    SIGNAL: Final = "temporal.signal"
    QUERY: Final = "temporal.query"
    UPDATE: Final = "temporal.update"
    UPDATE_ID: Final = "temporal.update_id"
    ENDPOINT: Final = "temporal.nexus.endpoint"
    SERVICE: Final = "temporal.nexus.service"
    OPERATION: Final = "temporal.nexus.operation"
    REQUEST_ID: Final = "temporal.nexus.request_id"
    OPERATION_TOKEN: Final = "temporal.nexus.operation_token"
    CALLER_KIND: Final = "temporal.caller.kind"
    CALLER_NAMESPACE: Final = "temporal.caller.namespace"
    CALLER_WORKFLOW_ID: Final = "temporal.caller.workflow_id"
    CALLER_RUN_ID: Final = "temporal.caller.run_id"
    CALLER_ACTIVITY_ID: Final = "temporal.caller.activity_id"
    CALLER_ACTIVITY_TYPE: Final = "temporal.caller.activity_type"
    CALLER_ATTEMPT: Final = "temporal.caller.attempt"
    CALLER_EVENT_ID: Final = "temporal.caller.event_id"
    CALLER_VERIFIED: Final = "temporal.caller.verified"
    CALLER_REASON: Final = "temporal.caller.reason"
    ERROR_KIND: Final = "temporal.error.kind"
    ERROR_TYPE: Final = "temporal.error.type"
    OUTCOME: Final = "temporal.outcome"
    REPLAY_SAFE: Final = "temporal.replay_safe"

    # Written by the collector on the spans it exports upstream.
    SYNTHESIZED: Final = "temporal.synthesized"
    CALLER_TRACE_ID: Final = "temporal.caller.trace_id"
    CALLER_SPAN_ID: Final = "temporal.caller.span_id"
    CALL_KIND: Final = "temporal.call.kind"
    LINK: Final = "temporal.link"
    # A request id under a shorter key, accepted from other senders.
    REQUEST_ID_SHORT: Final = "temporal.request_id"

    # Written by the SDK's ``temporalio.contrib.opentelemetry`` (which names no namespace).
    SDK_WORKFLOW_ID: Final = "temporalWorkflowID"
    SDK_RUN_ID: Final = "temporalRunID"
    SDK_ACTIVITY_ID: Final = "temporalActivityID"
    SDK_ACTIVITY_TYPE: Final = "temporalActivityType"
    SDK_UPDATE_ID: Final = "temporalUpdateID"

    # HTTP semantic conventions, on the API side of an activity wrapper.
    HTTP_METHOD: Final = "http.request.method"
    HTTP_ROUTE: Final = "http.route"
    URL_PATH: Final = "url.path"
    HTTP_STATUS_CODE: Final = "http.response.status_code"
