"""Retention deletes whole old trees in batches, and nothing that is still going on."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select
from temporalio.client import Client

from tests.conftest import LinkedSample
from tracer.db import Call, ExportRun, Link, WorkflowRun
from tracer.devserver import DevServer
from tracer.jobs import parse_duration, purge_once
from tracer.link import parse_history
from tracer.store import Store


async def _save(store: Store, address: str, namespace: str, workflow_id: str, cut: int = 0) -> None:
    client = await Client.connect(address, namespace=namespace)
    history = await client.get_workflow_handle(workflow_id).fetch_history()
    events = list(history.events)[: cut or None]
    store.save_run(parse_history(namespace, workflow_id, history.run_id, events))


def _runs(store: Store) -> set[str]:
    with store.session() as session:
        return set(session.scalars(select(WorkflowRun.workflow_id)))


def _count(store: Store, model: type[Call] | type[Link]) -> int:
    with store.session() as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


async def test_purge_deletes_closed_trees_whole_and_keeps_running_ones(
    linked_sample: LinkedSample, temporal_server: DevServer, store: Store
) -> None:
    address = temporal_server.address
    done, going = linked_sample.order_ids["ok"], linked_sample.order_ids["declined"]
    for namespace, workflow_id in (
        ("orders", done),
        ("payments", f"payment-{done}"),
        ("notifications", f"confirm-{done}"),
        ("inventory", f"stock-{done}"),
        ("payments", f"payment-{going}"),
    ):
        await _save(store, address, namespace, workflow_id)
    # The declined order as it looked mid-run: its root is still running.
    await _save(store, address, "orders", going, cut=20)

    # The exporter's bookkeeping for each run goes with it.
    with store.session.begin() as session:
        for namespace, run_id in session.execute(select(WorkflowRun.namespace, WorkflowRun.run_id)):
            session.add(
                ExportRun(destination="d", namespace=namespace, run_id=run_id,
                          synthesized=False, done_at=datetime.now(UTC))
            )  # fmt: skip

    nothing = purge_once(store, datetime.now(UTC) - timedelta(days=1))
    assert (nothing.trees, nothing.runs) == (0, 0)
    assert len(_runs(store)) == 6

    report = purge_once(store, datetime.now(UTC) + timedelta(days=1), batch_size=2)
    assert (report.trees, report.runs) == (1, 4)
    assert _runs(store) == {going, f"payment-{going}"}
    # No call or link of the deleted tree is left behind; the running tree keeps its own.
    with store.session() as session:
        remaining = set(session.scalars(select(WorkflowRun.id)))
        assert set(session.scalars(select(Call.run_pk))) <= remaining
    assert _count(store, Link) > 0
    with store.session() as session:
        kept = set(session.scalars(select(WorkflowRun.run_id)))
        assert set(session.scalars(select(ExportRun.run_id))) == kept


@pytest.mark.parametrize(
    ("text", "expected"),
    [("30d", timedelta(days=30)), ("12h", timedelta(hours=12)), ("90m", timedelta(minutes=90)),
     ("2w", timedelta(weeks=2)), ("45", timedelta(seconds=45))],
)  # fmt: skip
def test_durations_read_as_people_write_them(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


def test_a_bad_duration_is_refused_with_an_example() -> None:
    with pytest.raises(ValueError, match=r"e\.g\. 30d"):
        parse_duration("soon")
