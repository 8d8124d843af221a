"""Overhead of tracing interceptors on a real Temporal dev server.

The same workload (``--workflows`` workflows, each running ``--activities`` activities and
``--nexus`` sync Nexus calls into a second namespace) runs with no tracing, with the SDK's
``temporalio.contrib.opentelemetry.TracingInterceptor`` and with
``interceptors.TracingInterceptor``, alternated round by round in one run. Spans go
through a ``BatchSpanProcessor`` to an exporter that drops them, so exporting costs what
it costs in production minus the network. Prints each mode's median wall time, the
median CPU time of this process (workers and clients; steadier than wall time on a
shared machine) and the ratios. Not a test.

    .venv/bin/python bench/interceptor_overhead.py [--workflows 200] [--rounds 3]
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
from collections.abc import Sequence
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


async def _bench(args: argparse.Namespace) -> None:
    from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
    from temporalio.api.nexus.v1 import EndpointSpec, EndpointTarget
    from temporalio.api.operatorservice.v1 import CreateNexusEndpointRequest
    from temporalio.client import Client
    from temporalio.contrib.opentelemetry import TracingInterceptor as SdkTracingInterceptor
    from temporalio.worker import Worker

    import interceptors
    from tracer.devserver import DevServer

    class DropExporter(SpanExporter):
        spans = 0

        def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
            DropExporter.spans += len(spans)
            return SpanExportResult.SUCCESS

        def shutdown(self) -> None:
            pass

    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(DropExporter(), max_queue_size=65536))
    modes: dict[str, list[object]] = {
        "none": [],
        "sdk": [SdkTracingInterceptor(provider.get_tracer("sdk"))],
        "ours": [interceptors.TracingInterceptor(provider)],
    }
    tmp = Path(tempfile.mkdtemp(prefix="tt-bench-"))
    server = DevServer(
        namespaces=("orders", "payments"), db_file=tmp / "t.db", log_file=tmp / "server.log"
    )
    server.start()
    try:
        admin = await server.wait_ready()
        times: dict[str, list[float]] = {mode: [] for mode in modes}
        cpu: dict[str, list[float]] = {mode: [] for mode in modes}
        setups = {}
        for mode, mode_interceptors in modes.items():
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
            orders = await Client.connect(
                server.address,
                namespace="orders",
                interceptors=mode_interceptors,  # type: ignore[arg-type]
            )
            payments = await Client.connect(
                server.address,
                namespace="payments",
                interceptors=mode_interceptors,  # type: ignore[arg-type]
            )
            setups[mode] = (orders, payments, endpoint, handler_tq)

        async def one_round(
            mode: str, round_no: int, count: int | None = None
        ) -> tuple[float, float]:
            orders, payments, endpoint, handler_tq = setups[mode]
            tq = f"bench-{mode}-{round_no}"
            job = Work(endpoint=endpoint, activities=args.activities, nexus=args.nexus)
            async with (
                Worker(orders, task_queue=tq, workflows=[BenchWorkflow], activities=[work]),
                Worker(
                    payments, task_queue=handler_tq, nexus_service_handlers=[BenchServiceHandler()]
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

        await one_round("none", -1, min(args.workflows, 20))  # warm-up
        order = list(modes)
        for round_no in range(args.rounds):
            for mode in order[round_no % 3 :] + order[: round_no % 3]:
                elapsed, used = await one_round(mode, round_no)
                times[mode].append(elapsed)
                cpu[mode].append(used)
                print(
                    f"round {round_no + 1} {mode:>4}: {elapsed:7.2f} s wall, {used:7.2f} s CPU",
                    flush=True,
                )
        provider.force_flush()
        medians = {mode: statistics.median(values) for mode, values in times.items()}
        cpu_medians = {mode: statistics.median(values) for mode, values in cpu.items()}
        print(
            f"\n{args.workflows} workflows x ({args.activities} activities + {args.nexus} "
            f"Nexus calls), {args.rounds} rounds, {DropExporter.spans} spans exported"
        )
        for mode, median in medians.items():
            print(
                f"median {mode:>4}: {median:7.2f} s wall, "
                f"{cpu_medians[mode]:7.2f} s CPU of the worker process"
            )
        for label, a, b in (("ours / none", "ours", "none"), ("sdk  / none", "sdk", "none")):
            print(
                f"{label}: {medians[a] / medians[b]:.3f} wall, "
                f"{cpu_medians[a] / cpu_medians[b]:.3f} CPU"
            )
        print(
            f"ours / sdk : {medians['ours'] / medians['sdk']:.3f} wall, "
            f"{cpu_medians['ours'] / cpu_medians['sdk']:.3f} CPU"
        )
    finally:
        server.stop()
        provider.shutdown()


def main(argv: Sequence[str] | None = None) -> None:
    """Run the benchmark from the command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--workflows", type=int, default=100)
    parser.add_argument("--activities", type=int, default=5)
    parser.add_argument("--nexus", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=4)
    asyncio.run(_bench(parser.parse_args(argv)))
