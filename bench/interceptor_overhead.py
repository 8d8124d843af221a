"""Overhead of tracing on a real Temporal dev server: ours beside the SDK's two.

The same workload (``--workflows`` workflows, each running ``--activities`` activities and
``--nexus`` sync Nexus calls into a second namespace) runs in four modes, alternated round
by round in one run: untraced, ``interceptors.TracingPlugin``, the SDK's
``TracingInterceptor`` and the SDK's ``OpenTelemetryPlugin(add_temporal_spans=True)``.
Every mode runs on the same workflow runner (the sandbox with ``opentelemetry`` passed
through) and, traced, on the same replay-safe provider from ``create_tracer_provider()``,
whose ``BatchSpanProcessor`` hands spans to an exporter that drops them: exporting costs
what it costs in production minus the network.

Prints, per mode, the median CPU time of this process (workers and clients; steadier than
wall time on a shared machine), and its ratio to the untraced run of the same round:
median and spread (lowest to highest) over the rounds. Not a test.

    .venv/bin/python bench/interceptor_overhead.py [--workflows 100] [--rounds 4]
    .venv/bin/python bench/interceptor_overhead.py --profile ours   # where ours spends it
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import nexusrpc
import nexusrpc.handler
from temporalio import activity, workflow

if __name__ == "__main__":  # re-import under a real module name so the sandbox can load it
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    importlib.import_module("interceptor_overhead").main()
    raise SystemExit(0)


@dataclass
class Work:
    endpoint: str
    activities: int
    nexus: int


@nexusrpc.service
class BenchService:
    echo: nexusrpc.Operation[str, str]


@nexusrpc.handler.service_handler(service=BenchService)
class BenchServiceHandler:
    @nexusrpc.handler.sync_operation
    async def echo(self, ctx: nexusrpc.handler.StartOperationContext, value: str) -> str:
        return value


@activity.defn
async def work(value: int) -> int:
    return value + 1


@workflow.defn
class BenchWorkflow:
    @workflow.run
    async def run(self, job: Work) -> int:
        total = 0
        for i in range(job.activities):
            total += await workflow.execute_activity(
                work, i, start_to_close_timeout=timedelta(seconds=30)
            )
        client = workflow.create_nexus_client(endpoint=job.endpoint, service=BenchService)
        for i in range(job.nexus):
            await client.execute_operation(
                BenchService.echo, str(i), schedule_to_close_timeout=timedelta(seconds=30)
            )
        return total


MODES = ("none", "ours", "sdk-interceptor", "sdk-plugin")


async def _bench(args: argparse.Namespace) -> None:
    import dataclasses

    from opentelemetry import trace
    from opentelemetry.sdk.trace import ReadableSpan
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
    from temporalio.api.nexus.v1 import EndpointSpec, EndpointTarget
    from temporalio.api.operatorservice.v1 import CreateNexusEndpointRequest
    from temporalio.client import Client, Interceptor, Plugin
    from temporalio.contrib.opentelemetry import OpenTelemetryPlugin, create_tracer_provider
    from temporalio.contrib.opentelemetry import TracingInterceptor as SdkTracingInterceptor
    from temporalio.worker import Worker
    from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner

    import interceptors
    from tracer.devserver import DevServer

    class DropExporter(SpanExporter):
        spans = 0

        def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
            DropExporter.spans += len(spans)
            return SpanExportResult.SUCCESS

        def shutdown(self) -> None:
            pass

    # The SDK's plugin reads the global provider, so every traced mode uses that one.
    provider = create_tracer_provider()
    provider.add_span_processor(BatchSpanProcessor(DropExporter(), max_queue_size=65536))
    trace.set_tracer_provider(provider)
    sdk_provider = provider._tracer_provider  # the SDK provider the replay-safe one wraps
    runner = SandboxedWorkflowRunner()
    runner = dataclasses.replace(
        runner, restrictions=runner.restrictions.with_passthrough_modules("opentelemetry")
    )
    options: dict[str, tuple[list[Interceptor], list[Plugin]]] = {
        "none": ([], []),
        "ours": ([], [interceptors.TracingPlugin(provider)]),
        "sdk-interceptor": ([SdkTracingInterceptor(sdk_provider.get_tracer("sdk"))], []),
        "sdk-plugin": ([], [OpenTelemetryPlugin(add_temporal_spans=True)]),
    }
    modes = [mode for mode in MODES if mode in args.modes]
    tmp = Path(tempfile.mkdtemp(prefix="tt-bench-"))
    server = DevServer(
        namespaces=("orders", "payments"), db_file=tmp / "t.db", log_file=tmp / "server.log"
    )
    server.start()
    try:
        admin = await server.wait_ready()
        times: dict[str, list[float]] = {mode: [] for mode in modes}
        cpu: dict[str, list[float]] = {mode: [] for mode in modes}
        setups: dict[str, tuple[Client, Client, str, str]] = {}
        for mode in modes:
            mode_interceptors, plugins = options[mode]
            endpoint, handler_tq = f"bench-{mode}-{uuid.uuid4().hex[:6]}", f"bench-h-{mode}"
            await admin.operator_service.create_nexus_endpoint(
                CreateNexusEndpointRequest(
                    spec=EndpointSpec(
                        name=endpoint,
                        target=EndpointTarget(
                            worker=EndpointTarget.Worker(
                                namespace="payments", task_queue=handler_tq
                            )
                        ),
                    )
                )
            )
            orders, payments = [
                await Client.connect(
                    server.address, namespace=ns, interceptors=mode_interceptors, plugins=plugins
                )
                for ns in ("orders", "payments")
            ]
            setups[mode] = (orders, payments, endpoint, handler_tq)

        async def one_round(
            mode: str, round_no: int, count: int | None = None
        ) -> tuple[float, float]:
            orders, payments, endpoint, handler_tq = setups[mode]
            tq = f"bench-{mode}-{round_no}"
            job = Work(endpoint=endpoint, activities=args.activities, nexus=args.nexus)
            async with (
                Worker(
                    orders,
                    task_queue=tq,
                    workflows=[BenchWorkflow],
                    activities=[work],
                    workflow_runner=runner,
                ),
                Worker(
                    payments,
                    task_queue=handler_tq,
                    nexus_service_handlers=[BenchServiceHandler()],
                    workflow_runner=runner,
                ),
            ):
                began, cpu_began = time.perf_counter(), time.process_time()
                handles = [
                    await orders.start_workflow(
                        BenchWorkflow.run, job, id=f"bench-{uuid.uuid4().hex}", task_queue=tq
                    )
                    for _ in range(count or args.workflows)
                ]
                await asyncio.gather(*(handle.result() for handle in handles))
                return time.perf_counter() - began, time.process_time() - cpu_began

        for mode in modes:  # warm-up: imports, sandbox caches, connections
            await one_round(mode, -1, min(args.workflows, 10))
        if args.profile:
            await _profile(lambda: one_round(args.profile, -2))
            return
        for round_no in range(args.rounds):
            shift = round_no % len(modes)
            for mode in modes[shift:] + modes[:shift]:
                elapsed, used = await one_round(mode, round_no)
                times[mode].append(elapsed)
                cpu[mode].append(used)
                print(
                    f"round {round_no + 1} {mode:>15}: {elapsed:7.2f} s wall, {used:7.2f} s CPU",
                    flush=True,
                )
        provider.force_flush()
        print(
            f"\n{args.workflows} workflows x ({args.activities} activities + {args.nexus} "
            f"Nexus calls), {args.rounds} rounds, {DropExporter.spans} spans exported"
        )
        for mode in modes:
            line = (
                f"{mode:>15}: {statistics.median(times[mode]):7.2f} s wall, "
                f"{statistics.median(cpu[mode]):7.2f} s CPU"
            )
            if mode != "none" and "none" in cpu:
                ratios = sorted(c / n for c, n in zip(cpu[mode], cpu["none"], strict=True))
                line += (
                    f"  CPU / untraced {statistics.median(ratios):.3f}"
                    f" (spread {ratios[0]:.3f}-{ratios[-1]:.3f})"
                )
            print(line)
    finally:
        server.stop()
        provider.shutdown()


async def _profile(run: Callable[[], Awaitable[object]]) -> None:
    """Run one round under cProfile; print the functions with the most own time."""
    import cProfile
    import pstats

    profiler = cProfile.Profile()
    profiler.enable()
    await run()
    profiler.disable()
    pstats.Stats(profiler).sort_stats("tottime").print_stats(40)
    pstats.Stats(profiler).sort_stats("cumulative").print_stats("interceptors", 30)


def main(argv: Sequence[str] | None = None) -> None:
    """Run the benchmark from the command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--workflows", type=int, default=100)
    parser.add_argument("--activities", type=int, default=5)
    parser.add_argument("--nexus", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    parser.add_argument("--profile", choices=MODES, help="profile one round of this mode")
    asyncio.run(_bench(parser.parse_args(argv)))
