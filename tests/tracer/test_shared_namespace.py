"""Two collectors on one PostgreSQL share ONE namespace through the work queue: disjoint
reads, every edge linked, and nothing lost when one of them is killed mid-run."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections import defaultdict
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from typing import Any

from temporalio.client import Client
from temporalio.worker import Worker

from tracer.db import create_db_engine, upgrade_database
from tracer.devserver import DevServer
from tracer.jobs import LeaseKeeper
from tracer.link import Connections, HistoryLinker, load_connect_configs
from tracer.store import ClaimedRun, Store

from ._edge_workflows import ChildWorkflow, ParentWorkflow, leaf

NAMESPACE = "orders"
PARENTS = 20  # with two children each: 60 real runs
RUNS = 2000  # the rest are queued runs Temporal no longer has (deleted, as by retention)
TTL = timedelta(seconds=2)

Reads = dict[str, list[tuple[str, float, float]]]


class Collector:
    """What one collector process runs for linking: its lease keeper and its linker."""

    def __init__(self, name: str, url: str, address: str, reads: Reads) -> None:
        self.name = name
        self.engine = create_db_engine(url)
        self.store = Store(self.engine)
        self.leases = LeaseKeeper(self.store, ttl=TTL)
        connections = Connections(load_connect_configs([NAMESPACE], address=address))
        self.linker = HistoryLinker(self.store, connections, poll_interval=0.2, leases=self.leases)
        self.tasks: list[asyncio.Task[None]] = []
        self.read = 0
        original = self.linker._read_one

        async def recorded(calls: Any, run: ClaimedRun, *args: Any) -> Any:
            began = time.monotonic()
            outcome = await original(calls, run, *args)
            if outcome.result.read:
                reads[run.run_id].append((self.name, began, time.monotonic()))
                self.read += 1
            return outcome

        self.linker._read_one = recorded  # type: ignore[method-assign]

    def start(self) -> None:
        async def keep_leases() -> None:
            while True:
                self.leases.held = await asyncio.to_thread(self.leases.balance, [NAMESPACE])
                await asyncio.sleep(TTL.total_seconds() / 3)

        async def link() -> None:
            while True:
                await self.linker.poll_once(read_seconds=1.0)
                await asyncio.sleep(0.2)

        self.tasks = [asyncio.create_task(keep_leases()), asyncio.create_task(link())]

    async def kill(self) -> None:
        """Stop at once, giving nothing back: its leases and claims only expire."""
        for task in self.tasks:
            task.cancel()
        for task in self.tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def until(check: Callable[[], Awaitable[bool] | bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        outcome = check()
        if not isinstance(outcome, bool):
            outcome = await outcome
        if outcome:
            return
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.1)


async def test_two_collectors_share_one_namespace_and_survive_a_kill(
    temporal_server: DevServer, postgres_url: str
) -> None:
    engine = create_db_engine(postgres_url)
    upgrade_database(engine)
    store = Store(engine)
    # Discovery starts now: the session's older runs are not this test's business.
    since = datetime.now(UTC) - timedelta(seconds=1)
    store.ensure_namespace_states([NAMESPACE])
    store.set_namespace_status(NAMESPACE, "ok", close_cursor=since, start_cursor=since)

    client = await Client.connect(temporal_server.address, namespace=NAMESPACE)
    queue, tag = f"shared-{uuid.uuid4().hex[:8]}", uuid.uuid4().hex[:8]
    parents = [f"shared-{tag}-{i}" for i in range(PARENTS)]
    async with Worker(
        client, task_queue=queue, workflows=[ParentWorkflow, ChildWorkflow], activities=[leaf]
    ):
        await asyncio.gather(
            *(
                client.execute_workflow(ParentWorkflow.run, ["a", "b"], id=p, task_queue=queue)
                for p in parents
            )
        )
    synthetic = RUNS - 3 * PARENTS
    gone = [(f"gone-{tag}-{i}", str(uuid.uuid4())) for i in range(synthetic)]
    synthetic_ids = {run_id for _, run_id in gone}
    store.enqueue_runs(NAMESPACE, gone)

    reads: Reads = defaultdict(list)
    first = Collector("first", postgres_url, temporal_server.address, reads)
    second = Collector("second", postgres_url, temporal_server.address, reads)
    try:
        first.start()
        second.start()
        # Both read; then the first dies mid-run, holding claims.
        await until(lambda: first.read >= 300 and second.read >= 300, timeout=30)
        await first.kill()
        killed_at = time.monotonic()
        assert store.work_counts(NAMESPACE).queued > 0, "the run ended before the kill"

        def all_read() -> bool:
            if store.work_counts(NAMESPACE).queued:
                return False
            # The real runs too (the lease, and with it discovery, moves after the kill).
            stored = store.runs_progress(NAMESPACE, [r for r in reads if r not in synthetic_ids])
            return len(stored) >= 3 * PARENTS

        async def all_read_now() -> bool:
            return await asyncio.to_thread(all_read)

        await until(all_read_now, timeout=30)
        print(f"second finished {time.monotonic() - killed_at:.1f}s after the kill")
    finally:
        await first.kill()
        await second.kill()

    # No run was read by both collectors at the same time, and only runs the dead one
    # held were read by both at all.
    both = 0
    for run_id, found in reads.items():
        by = {name for name, _, _ in found}
        if len(by) > 1:
            both += 1
            spans = sorted((began, ended) for _, began, ended in found)
            for (_, end), (start, _) in pairwise(spans):
                assert end <= start, f"{run_id} read by both at once"
    print(f"read: first {first.read}, second {second.read}; by both: {both}")
    assert both <= 32, both
    assert len(reads) >= RUNS
    # Every edge is linked: each parent's tree holds its two children.
    for parent in parents:
        tree = store.tree(NAMESPACE, f"{parent}-child-1", scope=None)
        assert tree is not None and tree.workflow_id == parent
        children = [
            (grandchild.workflow_id, grandchild.link)
            for call in tree.children
            for grandchild in call.children
        ]
        assert children == [(f"{parent}-child-0", "child"), (f"{parent}-child-1", "child")]
    for collector in (first, second):
        collector.engine.dispose()
    engine.dispose()
