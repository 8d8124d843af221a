"""Search, the namespace map and the tree API at production size.

Fills a store through the store's own write path (``Store.save_runs``, then the summaries
the collector keeps) with synthetic trees across 10 namespaces, keeps the truth it
generated, then times the first page of every search filter over real HTTP and checks
each answer (the rows and the exact total) against that truth.

    python bench/search.py                              # 1,000,000 runs, SQLite
    python bench/search.py --trees 20000                # a quicker look
    python bench/search.py --postgres                   # a throwaway local PostgreSQL
    python bench/search.py --postgres-url postgresql+psycopg://user@host/db

Each tree has 5 runs: a root that calls a handler over Nexus (which starts a child), a
handler through an activity wrapper, and a child of its own. Figures, not pass/fail.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import uvicorn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests._postgres import postgres_bindir, temporary_postgres
from tracer._process import freeze_startup_heap
from tracer.db import create_db_engine, upgrade_database
from tracer.devserver import free_port
from tracer.domain import LinkKind, LinkSource, NodeKind, Status
from tracer.store import CallFacts, LinkFacts, RunFacts, Store
from web import create_app

NAMESPACES = [f"ns{i}" for i in range(10)]
ROOT_TYPES = [f"Order{i}Workflow" for i in range(7)]
NOW = datetime.now(UTC).replace(microsecond=0)
SPAN = timedelta(days=60)
PAGE = 25


@dataclass
class Tree:
    """The truth about one generated tree."""

    index: int
    start: datetime
    root_ns: str
    root_type: str
    status: str
    caller_s: float | None  # None: still running
    namespaces: set[str] = field(default_factory=set)
    types: set[str] = field(default_factory=set)
    ids: set[str] = field(default_factory=set)


def _tree(index: int, trees: int) -> tuple[Tree, list[RunFacts]]:
    # Newest first by index, spread over SPAN, a few in the last hour.
    start = NOW - SPAN * (index / trees) - timedelta(seconds=30)
    ns = NAMESPACES[index % 10]
    other, third = NAMESPACES[(index + 1) % 10], NAMESPACES[(index + 3) % 10]
    root_type = ROOT_TYPES[index % 7]
    failed = index % 13 == 0
    running = index % 50 == 1
    caller_s = None if running else 1.0 + (index % 40)
    status = Status.RUNNING if running else (Status.FAILED if failed else Status.COMPLETED)
    end = None if caller_s is None else start + timedelta(seconds=caller_s)
    root_id, root_run = f"order-{index}", f"r-{index}"

    def run(ns_: str, wid: str, rid: str, type_: str, at: datetime, status_: str) -> RunFacts:
        close = None if status_ == Status.RUNNING else at + timedelta(seconds=0.5)
        return RunFacts(ns_, wid, rid, type_, "tq", Status(status_), at, close, history_length=9)

    root = run(ns, root_id, root_run, root_type, start, status)
    root.close_time = end
    at = start + timedelta(milliseconds=100)
    root.calls = [
        CallFacts(
            5,
            NodeKind.NEXUS_OPERATION,
            "ep/Ledger/post",
            at,
            Status.FAILED if failed else Status.COMPLETED,
            at + timedelta(seconds=0.6),
            endpoint="ep",
            service="Ledger",
            operation="post",
            request_id=f"q-{index}",
            operation_token=f"t-{index}",
        ),
        CallFacts(
            6,
            NodeKind.ACTIVITY,
            "reserve",
            at,
            Status.COMPLETED,
            at + timedelta(seconds=0.6),
            activity_id="1",
        ),
        CallFacts(
            7,
            NodeKind.CHILD_WORKFLOW,
            "AuditWorkflow",
            at,
            Status.COMPLETED,
            at + timedelta(seconds=0.6),
        ),
    ]
    ledger = run(
        other,
        f"ledger-{index}",
        f"l-{index}",
        "LedgerWorkflow",
        at,
        Status.FAILED if failed else Status.COMPLETED,
    )
    ledger.calls = [
        CallFacts(
            5,
            NodeKind.CHILD_WORKFLOW,
            "PostingWorkflow",
            at,
            ledger.status,
            at + timedelta(seconds=0.4),
        ),
    ]
    posting = run(other, f"d-{index}", f"d-{index}", "PostingWorkflow", at, ledger.status)
    if failed:
        posting.error_type, posting.error_message = "Overdrawn", "no funds"
    stock = run(third, f"stock-{index}", f"s-{index}", "ReserveStockWorkflow", at, Status.COMPLETED)
    audit = run(ns, f"audit-{index}", f"a-{index}", "AuditWorkflow", at, Status.COMPLETED)

    def link(kind: LinkKind, target: RunFacts, caller: RunFacts, **ids: Any) -> LinkFacts:
        return LinkFacts(
            kind,
            LinkSource.CALLER_HISTORY,
            caller.namespace,
            caller.workflow_id,
            caller.run_id,
            target.namespace,
            target.workflow_id,
            target.run_id,
            **ids,
        )

    root.links = [
        link(LinkKind.NEXUS, ledger, root, caller_event_id=5),
        link(LinkKind.CHILD, audit, root, caller_event_id=7),
    ]
    stock.links = [
        LinkFacts(
            LinkKind.ACTIVITY_WRAPPER,
            LinkSource.HEADER,
            ns,
            root_id,
            root_run,
            third,
            stock.workflow_id,
            stock.run_id,
            caller_activity_id="1",
        )
    ]
    ledger.links = [link(LinkKind.CHILD, posting, ledger, caller_event_id=5)]
    runs = [root, ledger, posting, stock, audit]
    truth = Tree(index, start, ns, root_type, status, caller_s)
    truth.namespaces = {r.namespace for r in runs}
    truth.types = {r.workflow_type for r in runs}
    truth.ids = {r.workflow_id for r in runs}
    return truth, runs


def fill(store: Store, trees: int) -> list[Tree]:
    """Write every tree through the store, oldest first, as a linker would meet them."""
    truth: list[Tree] = []
    started = time.perf_counter()
    batch: list[RunFacts] = []
    for index in reversed(range(trees)):
        tree, runs = _tree(index, trees)
        truth.append(tree)
        batch.extend(runs)
        if len(batch) >= 2500 or index == 0:
            store.save_runs(batch)
            batch = []
        if index % 20000 == 0:
            written = trees - index
            rate = written * 5 / (time.perf_counter() - started)
            print(f"  wrote {written:,} trees ({written * 5:,} runs), {rate:,.0f} runs/s")
    wrote = time.perf_counter() - started
    summarized = time.perf_counter()
    while store.refresh_summaries(max_runs=20000):
        print(f"  summarizing... {time.perf_counter() - summarized:.0f}s")
    print(
        f"wrote {trees * 5:,} runs in {wrote:.0f}s ({trees * 5 / wrote:,.0f} runs/s); "
        f"summarized {trees:,} trees in {time.perf_counter() - summarized:.0f}s"
    )
    return truth


@dataclass
class Case:
    """One filter, and how to pick its answer from the truth."""

    name: str
    params: dict[str, str]
    match: Callable[[Tree], bool]


def cases(truth: list[Tree]) -> list[Case]:
    """The filters the search page offers, alone and combined. Windows and open durations
    are relative to now, so the truth is taken now (filling takes a while)."""
    now = datetime.now(UTC)
    deep = truth[len(truth) // 2].index
    old_from, old_to = NOW - timedelta(days=41), NOW - timedelta(days=40)

    def iso(moment: datetime) -> str:
        return moment.isoformat().replace("+00:00", "Z")

    def lasting(tree: Tree, seconds: float) -> bool:
        if tree.caller_s is None:
            return (now - tree.start).total_seconds() >= seconds
        return tree.caller_s >= seconds

    return [
        Case("none", {}, lambda t: True),
        Case("namespace", {"namespace": "ns3"}, lambda t: "ns3" in t.namespaces),
        Case(
            "workflow type",
            {"workflow_type": "Order4Workflow"},
            lambda t: "Order4Workflow" in t.types,
        ),
        Case("status=failed", {"status": "failed"}, lambda t: t.status == Status.FAILED),
        Case("deep workflow id", {"workflow_id": f"d-{deep}"}, lambda t: t.index == deep),
        Case(
            "last hour",
            {"since": iso(now - timedelta(hours=1))},
            lambda t: t.start >= now - timedelta(hours=1),
        ),
        Case(
            "old range",
            {"since": iso(old_from), "until": iso(old_to)},
            lambda t: old_from <= t.start <= old_to,
        ),
        Case("min duration 35s", {"min_duration": "35"}, lambda t: lasting(t, 35)),
        Case(
            "namespace+failed",
            {"namespace": "ns3", "status": "failed"},
            lambda t: "ns3" in t.namespaces and t.status == Status.FAILED,
        ),
        Case(
            "type+namespace",
            {"workflow_type": "LedgerWorkflow", "namespace": "ns5"},
            lambda t: "LedgerWorkflow" in t.types and "ns5" in t.namespaces,
        ),
        Case(
            "type+last 7d",
            {"workflow_type": "Order2Workflow", "since": iso(now - timedelta(days=7))},
            lambda t: "Order2Workflow" in t.types and t.start >= now - timedelta(days=7),
        ),
    ]


def _p(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def measure(url: str, truth: list[Tree], repeats: int) -> None:
    """Time each case over HTTP and check rows and total against the truth."""
    newest = sorted(truth, key=lambda t: t.start, reverse=True)
    async with httpx.AsyncClient(base_url=url, timeout=120) as http:
        print(f"{'filter':<20} {'p50 ms':>8} {'p95 ms':>8} {'total':>9}  correct")
        for case in cases(truth):
            expected = [t for t in newest if case.match(t)]
            times: list[float] = []
            body: dict[str, Any] = {}
            for _ in range(repeats):
                started = time.perf_counter()
                response = await http.get("/api/traces", params={**case.params, "page_size": PAGE})
                times.append((time.perf_counter() - started) * 1000)
                response.raise_for_status()
                body = response.json()
            got = [row["workflow_id"] for row in body["traces"]]
            want = [f"order-{t.index}" for t in expected[:PAGE]]
            ok = got == want and body["total"] == len(expected)
            print(
                f"{case.name:<20} {_p(times, 0.5):8.1f} {_p(times, 0.95):8.1f} "
                f"{body['total']:>9,}  {'yes' if ok else f'NO (expected {len(expected):,})'}"
            )
        for window in ("24h", "30d"):
            times = []
            for _ in range(repeats):
                started = time.perf_counter()
                (await http.get("/api/map", params={"window": window})).raise_for_status()
                times.append((time.perf_counter() - started) * 1000)
            print(f"{'map ' + window:<20} {_p(times, 0.5):8.1f} {_p(times, 0.95):8.1f}")
        times = []
        for tree in newest[: repeats * 3 : 3]:
            started = time.perf_counter()
            deep_ns = NAMESPACES[(tree.index + 1) % 10]  # the posting run, two levels down
            response = await http.get(f"/api/workflows/{deep_ns}/d-{tree.index}/tree")
            times.append((time.perf_counter() - started) * 1000)
            assert response.json()["root"]["workflow_id"] == f"order-{tree.index}"
        print(f"{'tree API':<20} {_p(times, 0.5):8.1f} {_p(times, 0.95):8.1f}")


async def serve(store: Store, truth: list[Tree], repeats: int) -> None:
    """Serve the API with uvicorn on a free port and measure it."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(store), port=port, log_level="warning", lifespan="off")
    )
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.05)
    freeze_startup_heap()
    try:
        await measure(f"http://127.0.0.1:{port}", truth, repeats)
    finally:
        server.should_exit = True
        await task


def main() -> None:
    """Fill, then measure."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trees", type=int, default=200_000, help="trees of 5 runs each")
    parser.add_argument("--postgres-url", help="measure on this PostgreSQL database")
    parser.add_argument(
        "--postgres", action="store_true", help="measure on a throwaway local PostgreSQL"
    )
    parser.add_argument("--repeats", type=int, default=20, help="requests per filter")
    args = parser.parse_args()
    with contextlib.ExitStack() as stack:
        folder = stack.enter_context(tempfile.TemporaryDirectory())
        url = args.postgres_url or f"sqlite:///{Path(folder) / 'search.db'}"
        if args.postgres:
            bindir = postgres_bindir()
            if bindir is None:
                parser.error("PostgreSQL is not installed (apt-get install postgresql)")
            url = stack.enter_context(temporary_postgres(bindir))
        engine = create_db_engine(url)
        upgrade_database(engine)
        store = Store(engine)
        print(f"filling {url.split('@')[-1]} with {args.trees:,} trees ({args.trees * 5:,} runs)")
        truth = fill(store, args.trees)
        asyncio.run(serve(store, truth, args.repeats))
        engine.dispose()


if __name__ == "__main__":
    main()
