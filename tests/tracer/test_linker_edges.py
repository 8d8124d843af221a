"""Edges beyond Nexus: same-namespace child workflows, on each database."""

from __future__ import annotations

import uuid

from temporalio.client import Client
from temporalio.worker import Worker

from tracer._connections import Connections, load_connect_configs
from tracer._linker import HistoryLinker
from tracer._store import Store
from tracer._tree import build_tree
from tracer.devserver import DevServer

from ._edge_workflows import ChildWorkflow, ParentWorkflow, leaf


async def test_child_workflows_hang_under_their_start_calls(
    temporal_server: DevServer, store: Store
) -> None:
    client = await Client.connect(temporal_server.address, namespace="orders")
    task_queue = f"edges-{uuid.uuid4().hex[:8]}"
    parent_id = f"parent-{uuid.uuid4().hex[:8]}"
    async with Worker(
        client, task_queue=task_queue, workflows=[ParentWorkflow, ChildWorkflow], activities=[leaf]
    ):
        result = await client.execute_workflow(
            ParentWorkflow.run, ["a", "boom"], id=parent_id, task_queue=task_queue
        )
    assert result == ["a", "failed"]

    linker = HistoryLinker(
        store, Connections(load_connect_configs(["orders"], address=temporal_server.address))
    )
    await linker.poll_once()
    with store.session() as session:
        root = build_tree(session, "orders", f"{parent_id}-child-1")
    assert root is not None
    tree = root.to_json()
    assert (tree["workflow_id"], tree["status"]) == (parent_id, "completed")
    starts = [child for child in tree["children"] if child["kind"] == "child_workflow"]
    assert [(c["name"], c["status"]) for c in starts] == [
        ("ChildWorkflow", "completed"),
        ("ChildWorkflow", "failed"),
    ]
    children = [start["children"][0] for start in starts]
    assert [(c["workflow_id"], c["link"], c["namespace"]) for c in children] == [
        (f"{parent_id}-child-0", "child", "orders"),
        (f"{parent_id}-child-1", "child", "orders"),
    ]
    assert children[1]["error"] == {"type": "LeafError", "message": "leaf failed"}
    assert [a["name"] for a in children[1]["children"]] == ["leaf"]
