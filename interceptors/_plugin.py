"""``TracingPlugin``: the interceptors and their sandbox settings in one client option."""

from __future__ import annotations

import dataclasses

import opentelemetry.trace
import temporalio.plugin
from temporalio.worker import WorkflowRunner
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner

from ._tracing import TracingInterceptor

__all__ = ["PASSTHROUGH_MODULES", "TracingPlugin"]

PASSTHROUGH_MODULES = ("opentelemetry", "interceptors")
"""Modules the workflow sandbox shares with the worker instead of importing them again.

``opentelemetry`` keeps one context implementation and tracer provider per process;
``interceptors`` keeps one copy of the caller a handler sees, whichever side imports it.
"""


def _pass_through(runner: WorkflowRunner | None) -> WorkflowRunner:
    if runner is None:
        runner = SandboxedWorkflowRunner()
    if isinstance(runner, SandboxedWorkflowRunner):
        return dataclasses.replace(
            runner,
            restrictions=runner.restrictions.with_passthrough_modules(*PASSTHROUGH_MODULES),
        )
    return runner


class TracingPlugin(temporalio.plugin.SimplePlugin):
    """Cross-namespace tracing for a Temporal client and the workers built from it.

    Installs :class:`interceptors.TracingInterceptor` on the client, its workers and
    replayers, and lets ``opentelemetry`` and ``interceptors`` through the workflow
    sandbox::

        client = await Client.connect(addr, namespace="orders", plugins=[TracingPlugin()])
        worker = Worker(client, task_queue="orders-tq", workflows=[OrderWorkflow])

    It works beside workers that run the SDK's ``OpenTelemetryPlugin`` or
    ``TracingInterceptor``: the headers are the same, so one trace spans both.

    Args:
        tracer_provider: Provider to create spans with; defaults to the global one.
            Workflow spans need the SDK ``TracerProvider`` (or the SDK's
            ``ReplaySafeTracerProvider`` around one) to get replay-stable ids.

    Attributes:
        interceptor: The interceptor the plugin installs.
    """

    def __init__(self, tracer_provider: opentelemetry.trace.TracerProvider | None = None) -> None:
        """Create the plugin and the one interceptor it installs everywhere."""
        self.interceptor = TracingInterceptor(tracer_provider)
        super().__init__(
            "temporal_tracer.TracingPlugin",
            interceptors=[self.interceptor],
            workflow_runner=_pass_through,
        )
