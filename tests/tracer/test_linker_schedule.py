"""When the linker reads a run: discovery by time cursors, the work queue's order, the
budget of Temporal calls."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import update
from temporalio.client import Client
from temporalio.service import RPCError

from tracer.db import LinkWork, create_db_engine, upgrade_database
from tracer.devserver import DevServer
from tracer.link import Connections, HistoryLinker, TokenBucket, load_connect_configs
from tracer.link._discovery import OVERLAP, SWEEP_OVERLAP, Cursors, runs_to_read
from tracer.link._linker import MAX_REREAD_INTERVAL, MIN_REREAD_INTERVAL, next_due
from tracer.link._temporal import ListedRun
from tracer.store import Priority, RunRead, Store

TTL = timedelta(seconds=30)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_the_budget_refills_at_its_rate_and_discovery_overdraws_it_by_a_second_at_most() -> None:
    clock = Clock()
    bucket = TokenBucket(20, clock=clock)
    assert bucket.available() == 20  # a second's worth to start with
    bucket.spend(20)
    assert bucket.available() == 0
    clock.now += 0.5
    assert bucket.available() == 10
    bucket.spend(500)  # a burst of starts: read at once, paid for later
    assert bucket.available() == 0
    clock.now += 1.5
    assert bucket.available() == 10  # overdrawn by 20 at most: refilled after a second
    clock.now += 60
    assert bucket.available() == 20  # never more than a second's worth
    bucket.rate = 5  # more collectors share the budget: a smaller share each
    assert bucket.available() == 5


def test_open_runs_are_due_again_after_a_twentieth_of_their_age_within_bounds() -> None:
    now = datetime.now(UTC)
    assert next_due(now - timedelta(seconds=5), now) == now + timedelta(seconds=MIN_REREAD_INTERVAL)
    assert next_due(now - timedelta(minutes=20), now) == now + timedelta(minutes=1)
    assert next_due(now - timedelta(days=3), now) == now + timedelta(seconds=MAX_REREAD_INTERVAL)


def _listed(run_id: str, start: datetime, close: datetime | None = None) -> ListedRun:
    return ListedRun(f"wf-{run_id}", run_id, close is None, start, close)


def test_cursors_trail_the_listing_and_never_pass_what_the_server_showed() -> None:
    assert Cursors().query() == ""  # first pass: every run the namespace keeps
    t0 = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
    first = Cursors().advance(
        [
            _listed("a", t0 - timedelta(minutes=5), t0 - timedelta(minutes=1)),
            _listed("b", t0 + timedelta(seconds=25)),
        ],
        listed_at=t0 + timedelta(seconds=30),
    )
    # Started: the listing's time less the overlap; closed: the newest close shown.
    assert first == Cursors(t0 + timedelta(seconds=30) - OVERLAP, t0 - timedelta(minutes=1))
    assert first.query() == (
        "StartTime >= '2026-12-04T12:00:20.000000Z' OR CloseTime >= '2026-12-04T11:59:00.000000Z'"
    )
    assert first.query(sweep=True).startswith(
        f"StartTime >= '{(t0 + timedelta(seconds=20) - SWEEP_OVERLAP):%Y-%m-%dT%H:%M:%S}"
    )
    # Nothing new, and this machine's clock far ahead: the cursors stay where they are.
    later = first.advance([], listed_at=t0 + timedelta(hours=5))
    assert later == first
    # A run shown late, below the cursor, does not move it back.
    assert first.advance([_listed("c", t0 - timedelta(hours=1))], t0) == first
    # Nothing started since the last run shown: the cursor stays at that run's start,
    # whatever this machine's clock says.
    idle = Cursors().advance([_listed("d", t0)], listed_at=t0 + timedelta(hours=1))
    assert idle.start == t0


def test_runs_to_read_are_new_ones_and_stored_running_ones_that_closed() -> None:
    t0 = datetime.now(UTC)
    listed = [
        _listed("new", t0),
        _listed("still-running", t0),
        _listed("closed-now", t0, t0),
        _listed("closed-before", t0, t0),
    ]
    known = {
        "still-running": ("running", 5),
        "closed-now": ("running", 5),
        "closed-before": ("completed", 9),
    }
    assert runs_to_read(listed, known) == [("wf-new", "new"), ("wf-closed-now", "closed-now")]


# --- the work queue, on SQLite and PostgreSQL -----------------------------------------------


def _make_due(store: Store, namespace: str, run_ids: list[str], at: datetime) -> None:
    with store.session.begin() as session:
        session.execute(
            update(LinkWork)
            .where(LinkWork.namespace == namespace, LinkWork.run_id.in_(run_ids))
            .values(due_at=at)
        )


def test_discovery_is_read_at_once_requests_and_stale_runs_within_the_budget(
    store: Store,
) -> None:
    ns = "queue-order"
    store.enqueue_runs(ns, [("wf-new-1", "new-1"), ("wf-new-2", "new-2")])
    first = store.claim_runs(ns, "me", discovery=10, budgeted=0, ttl=TTL)
    assert [(r.run_id, r.priority) for r in first] == [
        ("new-1", Priority.DISCOVERY),
        ("new-2", Priority.DISCOVERY),
    ]
    now = datetime.now(UTC)
    store.finish_runs(ns, "me", [RunRead("new-1", next_due=now + timedelta(hours=1))])
    store.finish_runs(ns, "me", [RunRead("new-2", next_due=now + timedelta(hours=2))])
    # Open and not due: nothing to do, whatever the budget.
    assert store.claim_runs(ns, "me", discovery=10, budgeted=10, ttl=TTL) == []
    # A span (or a page view) asks for new-2; new-1 falls due.
    assert store.request_refresh([(ns, "new-2"), (ns, "unknown"), ("other", "new-1")]) == 1
    _make_due(store, ns, ["new-1"], now - timedelta(seconds=1))
    assert store.claim_runs(ns, "me", discovery=10, budgeted=0, ttl=TTL) == []  # no budget
    assert [r.run_id for r in store.claim_runs(ns, "me", discovery=0, budgeted=1, ttl=TTL)] == [
        "new-2"  # the request before the stale run
    ]
    assert [r.run_id for r in store.claim_runs(ns, "me", discovery=0, budgeted=5, ttl=TTL)] == [
        "new-1"
    ]
    counts = store.work_counts(ns)
    assert (counts.queued, counts.claimed) == (2, 2)
    # A closed run leaves the queue; an open one is due again later.
    store.finish_runs(ns, "me", [RunRead("new-1", open=False), RunRead("new-2", next_due=now)])
    counts = store.work_counts(ns)
    assert (counts.queued, counts.claimed, counts.due) == (1, 0, 1)


def test_a_request_made_while_a_run_is_read_survives_that_read(store: Store) -> None:
    ns = "queue-race"
    store.enqueue_runs(ns, [("wf", "run")])
    [claimed] = store.claim_runs(ns, "me", discovery=1, budgeted=0, ttl=TTL)
    assert store.request_refresh([(ns, "run")]) == 1  # a span arrives during the read
    later = datetime.now(UTC) + timedelta(hours=1)
    store.finish_runs(ns, "me", [RunRead(claimed.run_id, next_due=later)])
    [again] = store.claim_runs(ns, "me", discovery=0, budgeted=1, ttl=TTL)
    assert (again.run_id, again.priority) == ("run", Priority.REQUEST)


def test_claims_are_exclusive_until_they_expire_or_are_given_back(store: Store) -> None:
    ns = "queue-claims"
    store.enqueue_runs(ns, [(f"wf-{i}", f"run-{i:02}") for i in range(10)])
    mine = store.claim_runs(ns, "a", discovery=6, budgeted=0, ttl=TTL)
    theirs = store.claim_runs(ns, "b", discovery=6, budgeted=0, ttl=TTL)
    assert len(mine) == 6 and len(theirs) == 4
    assert not {r.run_id for r in mine} & {r.run_id for r in theirs}
    # "a" dies: its claims move on once they expire; "b" gives its own back.
    with store.session.begin() as session:
        session.execute(
            update(LinkWork)
            .where(LinkWork.claimed_by == "a")
            .values(claim_expires_at=datetime.now(UTC) - timedelta(seconds=1))
        )
    store.release_runs("b")
    assert len(store.claim_runs(ns, "c", discovery=20, budgeted=0, ttl=TTL)) == 10
    # A late finish by the dead owner changes nothing of the new claims.
    store.finish_runs(ns, "a", [RunRead(r.run_id, next_due=datetime.now(UTC)) for r in mine])
    assert store.work_counts(ns).claimed == 10


def test_a_stored_span_of_an_open_run_asks_for_a_read(store: Store) -> None:
    ns = "queue-spans"
    store.enqueue_runs(ns, [("wf", "span-run")])
    [claimed] = store.claim_runs(ns, "me", discovery=1, budgeted=0, ttl=TTL)
    store.finish_runs(ns, "me", [RunRead(claimed.run_id, next_due=datetime.now(UTC) + TTL)])
    assert store.work_counts(ns).requested == 0
    store.save_spans(
        [
            {
                "trace_id": "ab" * 16,
                "span_id": "cd" * 8,
                "name": "RunActivity:charge",
                "start_time_unix_nano": 1,
                "end_time_unix_nano": 2,
                "run_id": "span-run",
                "received_at": datetime.now(UTC),
            }
        ]
    )
    assert store.work_counts(ns).requested == 1


# --- on a real Temporal server ----------------------------------------------------------------


async def test_idle_open_runs_cost_the_budget_and_evidence_is_read_at_once(
    temporal_server: DevServer, sqlite_url: str
) -> None:
    engine = create_db_engine(sqlite_url)
    upgrade_database(engine)
    store = Store(engine)
    ns, budget = "default", 5.0  # a namespace no other test runs workflows in
    client = await Client.connect(temporal_server.address, namespace=ns)
    # Discovery starts now: older runs of the session are not this test's business.
    since = datetime.now(UTC) - timedelta(seconds=1)
    store.ensure_namespace_states([ns])
    store.set_namespace_status(ns, "ok", close_cursor=since, start_cursor=since)
    tag = uuid.uuid4().hex[:8]
    # No worker polls this task queue: the runs stay open with nothing happening.
    handles = await asyncio.gather(
        *(
            client.start_workflow("Idle", id=f"idle-{tag}-{i}", task_queue=f"nobody-{tag}")
            for i in range(30)
        )
    )
    try:
        linker = HistoryLinker(
            store,
            Connections(load_connect_configs([ns], address=temporal_server.address)),
            calls_per_second=budget,
        )
        ours = [handle.result_run_id or "" for handle in handles]
        for _ in range(20):  # a run may show in visibility a moment after it started
            await linker.poll_once()
            if len(store.runs_progress(ns, ours)) == 30:
                break
            await asyncio.sleep(0.2)
        # Discovery does not wait for the budget: 30 reads at 5 calls a second.
        assert len(store.runs_progress(ns, ours)) == 30
        assert store.work_counts(ns).queued == 30

        # All due at once: re-read by staleness no faster than the budget allows.
        with store.session.begin() as session:
            session.execute(
                update(LinkWork)
                .where(LinkWork.namespace == ns, LinkWork.run_id.in_(ours))
                .values(due_at=datetime.now(UTC))
            )
        await asyncio.sleep(1.0)  # the bucket refills from the discovery burst
        before, began = linker.calls.total, time.monotonic()
        while time.monotonic() - began < 3.0:
            await linker.poll_once()
            await asyncio.sleep(0.3)
        spent = linker.calls.total - before
        assert spent <= budget * (time.monotonic() - began) + budget + 1, spent
        assert spent >= budget * 2  # ... and it does spend it

        # Evidence: a page view reads its run next pass; a run that closes is read and leaves.
        await handles[0].signal("poke")
        store.request_refresh([(ns, handles[0].result_run_id or "")])
        await handles[1].terminate("done")
        await asyncio.sleep(1.0)  # visibility shows the close; the budget refills a little
        await linker.poll_once()
        progress = store.runs_progress(ns, ours[:2])
        poked, closed = (progress[run_id] for run_id in ours[:2])
        assert poked.status == "running" and poked.history_length > 2  # the signal was read
        assert closed.status == "terminated"
        assert store.work_counts(ns).queued == 29
    finally:
        for handle in handles:
            with contextlib.suppress(RPCError):
                await handle.terminate("test over")
        engine.dispose()


async def test_runs_that_cannot_be_read_never_hold_up_the_queue(
    temporal_server: DevServer, sqlite_url: str
) -> None:
    engine = create_db_engine(sqlite_url)
    upgrade_database(engine)
    store = Store(engine)
    ns = "default"
    since = datetime.now(UTC)
    store.ensure_namespace_states([ns])
    store.set_namespace_status(ns, "ok", close_cursor=since, start_cursor=since)
    # A forged caller header names a "run" that is not a run id; another run was deleted.
    store.enqueue_runs(ns, [("forged-caller", "run-forged"), ("deleted", str(uuid.uuid4()))])
    linker = HistoryLinker(
        store, Connections(load_connect_configs([ns], address=temporal_server.address))
    )
    report = await linker.poll_once()
    assert report.errors == 0
    assert store.work_counts(ns).queued == 0
    engine.dispose()
