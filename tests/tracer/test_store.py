"""The store and the linker on SQLite and on a real PostgreSQL server, fed real histories."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from sqlalchemy import func, select
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import Client

from tests.conftest import LinkedSample
from tracer.db import Link, WorkflowRun
from tracer.demo.model import NAMESPACES
from tracer.devserver import DevServer
from tracer.link import Connections, HistoryLinker, load_connect_configs, parse_history
from tracer.store import RunFacts, Store


def _shape(node: dict[str, Any]) -> tuple[Any, ...]:
    """What a tree is made of, without the parts that change while runs go on."""
    own = (node["kind"], node["namespace"], node["name"], node["workflow_id"], node["link"])
    return (*own, tuple(_shape(child) for child in node["children"]))


async def _history(
    temporal_server: DevServer, namespace: str, workflow_id: str
) -> tuple[str, list[HistoryEvent]]:
    client = await Client.connect(temporal_server.address, namespace=namespace)
    history = await client.get_workflow_handle(workflow_id).fetch_history()
    return history.run_id, list(history.events)


def _tree(store: Store, namespace: str, workflow_id: str) -> dict[str, Any]:
    root = store.tree(namespace, workflow_id, scope=None)
    assert root is not None, f"{namespace}/{workflow_id} not in the store"
    return root.to_json()


async def test_linker_builds_the_same_trees_on_each_database(
    linked_sample: LinkedSample, temporal_server: DevServer, store: Store
) -> None:
    connections = Connections(
        load_connect_configs(list(NAMESPACES), address=temporal_server.address)
    )
    linker = HistoryLinker(store, connections)
    report = await linker.poll_once()
    assert report.errors == 0 and report.runs_read >= 12
    for order_id in linked_sample.order_ids.values():
        ours = _tree(store, "orders", order_id)
        collectors = await linked_sample.tree("orders", order_id)
        assert _shape(ours) == _shape(collectors), order_id
    # A second pass reads only what is still running, and changes no edge.
    links_before = _count(store, Link)
    await linker.poll_once()
    assert _count(store, Link) == links_before


def _count(store: Store, model: type[Any]) -> int:
    with store.session() as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


async def test_an_older_read_of_a_history_never_overwrites_a_newer_one(
    linked_sample: LinkedSample, temporal_server: DevServer, store: Store
) -> None:
    order_id = linked_sample.order_ids["ok"]
    run_id, events = await _history(temporal_server, "orders", order_id)
    full = parse_history("orders", order_id, run_id, events)
    store.save_run(full)
    partial = parse_history("orders", order_id, run_id, events[:12])
    assert partial.status == "running" and len(partial.calls) < len(full.calls)
    store.save_run(partial)
    assert store.runs_progress("orders", [run_id])[run_id][:2] == ("completed", len(events))
    tree = _tree(store, "orders", order_id)
    assert len(tree["children"]) == len(full.calls)


async def test_each_source_is_stored_once_and_the_tree_merges_them(
    linked_sample: LinkedSample, temporal_server: DevServer, store: Store
) -> None:
    order_id = linked_sample.order_ids["ok"]
    caller = parse_history("orders", order_id, *await _history(temporal_server, "orders", order_id))
    handler_id = f"payment-{order_id}"
    handler = parse_history(
        "payments", handler_id, *await _history(temporal_server, "payments", handler_id)
    )
    for facts in (caller, handler, caller, handler):  # delivered twice, in both orders
        store.save_run(facts)
    sources = {
        link.source
        for link in caller.links + handler.links
        if link.handler_workflow_id == handler_id
    }
    # Both histories record the edge (and the handler's header too, written by our interceptor).
    assert {"caller_history", "handler_history"} <= sources
    assert _count(store, Link) == len(set(caller.links + handler.links))
    tree = _tree(store, "orders", order_id)
    payment_calls = [c for c in tree["children"] if c["name"].endswith("process_payment")]
    assert [child["workflow_id"] for child in payment_calls[0]["children"]] == [handler_id]


def _strip_links(events: list[HistoryEvent]) -> list[HistoryEvent]:
    """The same history as an older server writes it: no event links, no callback links."""
    stripped = []
    for event in events:
        copy = HistoryEvent()
        copy.CopyFrom(event)
        del copy.links[:]
        if copy.HasField("workflow_execution_started_event_attributes"):
            del copy.workflow_execution_started_event_attributes.completion_callbacks[:]
        stripped.append(copy)
    return stripped


async def test_operation_token_links_when_histories_carry_no_links(
    linked_sample: LinkedSample, temporal_server: DevServer, store: Store
) -> None:
    order_id = linked_sample.order_ids["ok"]
    run_id, events = await _history(temporal_server, "orders", order_id)
    caller = parse_history("orders", order_id, run_id, _strip_links(events))
    handler_id = f"payment-{order_id}"
    handler_run, handler_events = await _history(temporal_server, "payments", handler_id)
    store.save_run(caller)
    store.save_run(parse_history("payments", handler_id, handler_run, _strip_links(handler_events)))
    assert {link.source for link in caller.links} == {"operation_token"}
    tree = _tree(store, "orders", order_id)
    payment_call = next(c for c in tree["children"] if c["name"].endswith("process_payment"))
    [payment] = payment_call["children"]
    assert (payment["namespace"], payment["workflow_id"], payment["run_id"]) == (
        "payments",
        handler_id,
        handler_run,
    )


async def test_concurrent_readers_of_one_run_store_it_once(
    linked_sample: LinkedSample, temporal_server: DevServer, store: Store
) -> None:
    order_id = linked_sample.order_ids["poll"]
    facts = parse_history("orders", order_id, *await _history(temporal_server, "orders", order_id))
    errors: list[BaseException] = []

    def save(facts: RunFacts, record: Callable[[BaseException], None]) -> None:
        try:
            store.save_run(facts)
        except BaseException as err:
            record(err)

    threads = [threading.Thread(target=save, args=(facts, errors.append)) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert _count(store, WorkflowRun) == 1
