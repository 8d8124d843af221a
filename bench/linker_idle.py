"""Linker at idle: Temporal calls a second and CPU with 100 and 10,000 open workflows.

Starts an embedded Temporal dev server with one namespace, then open workflows that
nothing happens to (no worker polls their task queue): 100, then 10,000. At each size, for
each collector, it measures the server alone, then runs a fresh ``temporal-tracer serve``
on SQLite until it has read every run, lets it settle and measures again: Temporal calls
a second (from the server's own request counters), server CPU and collector CPU, in % of
one core.

    python bench/linker_idle.py
    python bench/linker_idle.py --compare ../old-checkout   # the same, side by side with
                                                            # the collector of another tree
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import create_engine, func, select
from temporalio.client import Client

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tracer.db import WorkflowRun
from tracer.devserver import DevServer, free_port

NAMESPACE = "idle"
HERE = Path(__file__).resolve().parent.parent
_TICKS = os.sysconf("SC_CLK_TCK")
# Requests the server makes to itself or that workers make, not the collector's.
_NOT_CALLS = re.compile(r"^(Poll|RecordWorkerHeartbeat|StartWorkflowExecution|GetSystemInfo)")


def cpu_seconds(pid: int) -> float:
    """User and system CPU of a process and its children that were waited for."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(value) for value in fields[11:15]) / _TICKS


def server_calls(server: DevServer) -> int:
    """Requests the server's frontend answered, but for polls and heartbeats."""
    body = urllib.request.urlopen(server.metrics_url, timeout=10).read().decode()
    total = 0
    for line in body.splitlines():
        if not line.startswith("service_requests{") or 'service_name="frontend"' not in line:
            continue
        operation = re.search(r'operation="([^"]+)"', line)
        if operation and not _NOT_CALLS.match(operation.group(1)):
            total += int(float(line.rsplit(" ", 1)[1]))
    return total


@dataclass
class Figures:
    calls_per_second: float
    server_cpu: float  # % of one core
    collector_cpu: float


async def measure(server: DevServer, seconds: float, collector: int | None) -> Figures:
    assert server.pid is not None
    calls, server_cpu = server_calls(server), cpu_seconds(server.pid)
    collector_cpu = cpu_seconds(collector) if collector else 0.0
    await asyncio.sleep(seconds)
    await asyncio.sleep(1.5)  # the server publishes its counters every second
    return Figures(
        (server_calls(server) - calls) / seconds,
        100 * (cpu_seconds(server.pid) - server_cpu) / seconds,
        100 * (cpu_seconds(collector) - collector_cpu) / seconds if collector else 0.0,
    )


async def start_idle(client: Client, first: int, count: int, tag: str) -> None:
    """Start ``count`` workflows no worker will ever pick up."""
    slots = asyncio.Semaphore(64)

    async def one(index: int) -> None:
        async with slots:
            await client.start_workflow(
                "IdleWorkflow", id=f"idle-{tag}-{index}", task_queue=f"nobody-{tag}"
            )

    await asyncio.gather(*(one(index) for index in range(first, first + count)))


def stored_runs(db_url: str) -> int:
    engine = create_engine(db_url)
    try:
        with engine.connect() as connection:
            if not engine.dialect.has_table(connection, "workflow_runs"):
                return 0
            return int(
                connection.execute(select(func.count()).select_from(WorkflowRun)).scalar() or 0
            )
    finally:
        engine.dispose()


async def run_collector(
    server: DevServer, source: Path, workdir: Path, open_runs: int, args: argparse.Namespace
) -> tuple[Figures, float]:
    """A fresh collector: read every run, settle, measure; returns its figures and how
    long it took to read them all."""
    db_url = f"sqlite:///{workdir / f'tracer-{uuid.uuid4().hex[:6]}.db'}"
    env = {**os.environ, "PYTHONPATH": str(source)}
    command = [
        sys.executable, "-m", "tracer", "serve", "--db", db_url, "--namespace", NAMESPACE,
        "--temporal-address", server.address, "--port", str(free_port()),
        "--otlp-port", str(free_port()), "--otlp-grpc-port", "0", "--log-level", "WARNING",
    ]  # fmt: skip
    with open(workdir / "collector.log", "ab") as log:
        process = subprocess.Popen(command, env=env, cwd=source, stdout=log, stderr=log)
    try:
        began = time.monotonic()
        while stored_runs(db_url) < open_runs:
            if process.poll() is not None:
                raise RuntimeError(f"the collector exited; see {workdir / 'collector.log'}")
            await asyncio.sleep(0.5)
        backfill = time.monotonic() - began
        await asyncio.sleep(args.settle)
        return await measure(server, args.seconds, process.pid), backfill
    finally:
        process.terminate()
        process.wait(30)


def row(label: str, figures: Figures) -> str:
    return (
        f"  {label:<26} {figures.calls_per_second:8.1f} calls/s   server CPU "
        f"{figures.server_cpu:6.1f} %   collector CPU {figures.collector_cpu:6.1f} %"
    )


async def bench(args: argparse.Namespace, workdir: Path) -> None:
    server = DevServer(namespaces=[NAMESPACE], log_file=workdir / "temporal.log")
    server.start()
    try:
        await server.wait_ready()
        client = await Client.connect(server.address, namespace=NAMESPACE)
        tag = uuid.uuid4().hex[:6]
        sources = [("this tree", HERE)]
        if args.compare:
            sources.append(("compared tree", Path(args.compare).resolve()))
        started = 0
        for size in args.sizes:
            began = time.monotonic()
            await start_idle(client, started, size - started, tag)
            print(f"{size} open workflows ({size - started} started in "
                  f"{time.monotonic() - began:.0f}s)", flush=True)  # fmt: skip
            started = size
            for label, source in sources:
                # The server alone just before, after a rest: what the collector adds.
                await asyncio.sleep(args.settle)
                alone = await measure(server, args.seconds, None)
                print(row("server alone", alone), flush=True)
                figures, backfill = await run_collector(server, source, workdir, size, args)
                print(row(label, figures) + f"   (read all in {backfill:.0f}s)", flush=True)
                caused = figures.server_cpu - alone.server_cpu
                print(f"  {'':<26} server CPU caused by the collector: {caused:+.1f} % of a core",
                      flush=True)  # fmt: skip
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 10_000])
    parser.add_argument("--seconds", type=float, default=30.0, help="each measurement")
    parser.add_argument("--settle", type=float, default=10.0, help="after the first reads")
    parser.add_argument("--compare", help="another source tree whose collector to measure too")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(os.environ.get("BENCH_WORKDIR", tmp))
        asyncio.run(bench(args, workdir))


if __name__ == "__main__":
    main()
