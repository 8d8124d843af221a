"""Cost of linking, per run: a fresh collector backfills completed cross-namespace calls.

Runs 5,000 caller workflows in one namespace, each with one async Nexus call whose handler
workflow runs in another (10,000 runs, 5,000 edges), on an embedded Temporal dev server.
Then a fresh ``temporal-tracer serve`` links them all, on SQLite and on PostgreSQL, and
the bench prints per linked run: collector CPU, Temporal calls (the server's own request
counters), database rows and bytes, and runs linked a second.

    python bench/link_cost.py
    python bench/link_cost.py --callers 500                   # a quicker look
    python bench/link_cost.py --compare ../old-checkout      # another tree's collector too
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
from sqlalchemy import Engine, create_engine, func, inspect, select, text
from temporalio.api.nexus.v1 import EndpointSpec, EndpointTarget
from temporalio.api.operatorservice.v1 import CreateNexusEndpointRequest
from temporalio.client import Client
from temporalio.worker import Worker

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _nexus_calls import CallerWorkflow, EchoServiceHandler, EchoWorkflow
from linker_idle import cpu_seconds, server_calls

from tests._postgres import postgres_bindir, temporary_postgres
from tracer.db import Link, WorkflowRun
from tracer.devserver import DevServer, free_port

CALLERS, HANDLERS = "callers", "handlers"
HERE = Path(__file__).resolve().parent.parent


async def run_callers(server: DevServer, count: int) -> None:
    """Run ``count`` callers to completion, each with one async Nexus call."""
    callers = await Client.connect(server.address, namespace=CALLERS)
    handlers = await Client.connect(server.address, namespace=HANDLERS)
    endpoint, queue = f"echo-{uuid.uuid4().hex[:6]}", f"echo-{uuid.uuid4().hex[:6]}"
    await callers.operator_service.create_nexus_endpoint(
        CreateNexusEndpointRequest(
            spec=EndpointSpec(
                name=endpoint,
                target=EndpointTarget(
                    worker=EndpointTarget.Worker(namespace=HANDLERS, task_queue=queue)
                ),
            )
        )
    )
    slots = asyncio.Semaphore(100)
    tag = uuid.uuid4().hex[:6]

    async def one(index: int) -> None:
        async with slots:
            await callers.execute_workflow(
                CallerWorkflow.run,
                args=[endpoint, f"{tag}-{index}"],
                id=f"caller-{tag}-{index}",
                task_queue=queue,
            )

    async with (
        Worker(
            callers, task_queue=queue, workflows=[CallerWorkflow], max_concurrent_workflow_tasks=100
        ),
        Worker(
            handlers,
            task_queue=queue,
            workflows=[EchoWorkflow],
            nexus_service_handlers=[EchoServiceHandler()],
        ),
    ):
        await asyncio.gather(*(one(index) for index in range(count)))


@dataclass
class Cost:
    runs: int
    seconds: float
    cpu: float
    calls: int
    rows: int
    bytes: int


def counts(engine: Engine) -> tuple[int, int]:
    with engine.connect() as connection:
        if not inspect(connection).has_table("links"):
            return 0, 0
        runs = connection.execute(select(func.count()).select_from(WorkflowRun)).scalar()
        links = connection.execute(select(func.count()).select_from(Link)).scalar()
    return int(runs or 0), int(links or 0)


def size(engine: Engine, db_file: Path | None) -> tuple[int, int]:
    """Rows in every table, and bytes on disk (tables and indexes)."""
    with engine.connect() as connection:
        tables = [t for t in inspect(connection).get_table_names() if t != "alembic_version"]
        rows = sum(
            int(connection.execute(text(f'SELECT count(*) FROM "{t}"')).scalar() or 0)
            for t in tables
        )
        if db_file is not None:
            connection.execute(text("PRAGMA wal_checkpoint(TRUNCATE)"))
            used = db_file.stat().st_size
        else:
            used = int(
                connection.execute(
                    text("SELECT sum(pg_total_relation_size(relid)) FROM pg_statio_user_tables")
                ).scalar()
                or 0
            )
    return rows, used


async def link_all(
    server: DevServer,
    source: Path,
    db_url: str,
    db_file: Path | None,
    expected: tuple[int, int],
    workdir: Path,
) -> Cost:
    port = free_port()
    command = [
        sys.executable, "-m", "tracer", "serve", "--db", db_url,
        "--namespace", CALLERS, "--namespace", HANDLERS,
        "--temporal-address", server.address, "--port", str(port),
        "--otlp-port", str(free_port()), "--otlp-grpc-port", "0", "--log-level", "WARNING",
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(source)}
    engine = create_engine(db_url)
    with open(workdir / "collector.log", "ab") as log:
        process = subprocess.Popen(command, env=env, cwd=source, stdout=log, stderr=log)
    try:
        async with httpx.AsyncClient(timeout=2) as http:
            while True:  # ready: migrated, serving; its linker starts now
                with contextlib.suppress(httpx.HTTPError):
                    if (await http.get(f"http://127.0.0.1:{port}/healthz")).status_code == 200:
                        break
                if process.poll() is not None:
                    raise RuntimeError(f"the collector exited; see {workdir / 'collector.log'}")
                await asyncio.sleep(0.05)
        cpu, calls, began = cpu_seconds(process.pid), server_calls(server), time.monotonic()
        runs, links = 0, 0
        while runs < expected[0] or links < expected[1]:
            await asyncio.sleep(0.25)
            runs, links = await asyncio.to_thread(counts, engine)
        seconds = time.monotonic() - began
        cpu = cpu_seconds(process.pid) - cpu
        await asyncio.sleep(1.5)  # the server publishes its counters every second
        calls = server_calls(server) - calls
    finally:
        process.terminate()
        process.wait(30)
    rows, used = size(engine, db_file)
    engine.dispose()
    return Cost(runs, seconds, cpu, calls, rows, used)


@contextlib.contextmanager
def postgres(url: str | None) -> Iterator[str | None]:
    if url:
        yield url
        return
    bindir = postgres_bindir()
    if bindir is None:
        yield None
        return
    with temporary_postgres(bindir) as server_url:
        yield server_url


def new_postgres_database(server_url: str) -> str:
    name = f"cost_{uuid.uuid4().hex[:8]}"
    admin = create_engine(server_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return server_url.rsplit("/", 1)[0] + f"/{name}"


def report(label: str, cost: Cost) -> None:
    per = max(cost.runs, 1)
    print(
        f"  {label:<28} {cost.runs / cost.seconds:7.0f} runs/s   "
        f"{1000 * cost.cpu / per:5.2f} ms CPU/run   {cost.calls / per:5.2f} calls/run   "
        f"{cost.rows / per:5.2f} rows/run   {cost.bytes / per:6.0f} B/run   "
        f"({cost.runs} runs in {cost.seconds:.1f}s)",
        flush=True,
    )


async def bench(args: argparse.Namespace, workdir: Path, pg_server: str | None) -> None:
    server = DevServer(namespaces=[CALLERS, HANDLERS], log_file=workdir / "temporal.log")
    server.start()
    try:
        await server.wait_ready()
        began = time.monotonic()
        await run_callers(server, args.callers)
        print(f"{args.callers} callers with one async Nexus call each, closed in "
              f"{time.monotonic() - began:.0f}s", flush=True)  # fmt: skip
        expected = (2 * args.callers, 2 * args.callers)  # runs; a link from each side
        sources = [("this tree", HERE)]
        if args.compare:
            sources.insert(0, ("compared tree", Path(args.compare).resolve()))
        for label, source in sources:
            db_file = workdir / f"cost-{uuid.uuid4().hex[:6]}.db"
            cost = await link_all(
                server, source, f"sqlite:///{db_file}", db_file, expected, workdir
            )
            report(f"{label}, SQLite", cost)
            if pg_server is not None:
                url = new_postgres_database(pg_server)
                cost = await link_all(server, source, url, None, expected, workdir)
                report(f"{label}, PostgreSQL", cost)
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--callers", type=int, default=5000)
    parser.add_argument("--compare", help="another source tree whose collector to measure too")
    parser.add_argument("--postgres-url", help="a PostgreSQL server to create databases on")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, postgres(args.postgres_url) as pg_server:
        workdir = Path(os.environ.get("BENCH_WORKDIR", tmp))
        if pg_server is None:
            print("PostgreSQL is not installed: SQLite only", flush=True)
        asyncio.run(bench(args, workdir, pg_server))


if __name__ == "__main__":
    main()
