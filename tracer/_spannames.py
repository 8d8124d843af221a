"""Span names shared with the interceptors (temporary home until the interceptors own it)."""

__all__ = ["SpanName"]


class SpanName:
    """Prefixes of span names, as the SDK's ``temporalio.contrib.opentelemetry`` names them."""

    NEXUS_START_HANDLER = "RunStartNexusOperationHandler:"
    START_NEXUS_OPERATION = "StartNexusOperation:"
    RUN_ACTIVITY = "RunActivity:"
    START_ACTIVITY = "StartActivity:"
    START_CHILD_WORKFLOW = "StartChildWorkflow:"
    RUN_WORKFLOW = "RunWorkflow:"
    SIGNAL_EXTERNAL_WORKFLOW = "SignalExternalWorkflow:"
