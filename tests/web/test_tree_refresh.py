"""Looking at a tree asks the linker to read its open runs again (and only those)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx

from tracer.domain import Status
from tracer.store import RunFacts, RunRead, Store
from web import WebSettings, create_app


async def test_a_tree_view_requests_a_read_of_its_open_runs(store: Store) -> None:
    now = datetime.now(UTC)
    store.save_runs(
        [
            RunFacts("views", "open-wf", "open-run", workflow_type="W", start_time=now),
            RunFacts(
                "views",
                "done-wf",
                "done-run",
                workflow_type="W",
                status=Status.COMPLETED,
                start_time=now,
                close_time=now,
            ),
        ]
    )
    store.enqueue_runs("views", [("open-wf", "open-run")])
    [claimed] = store.claim_runs("views", "linker", discovery=1, budgeted=0, ttl=timedelta(30))
    store.finish_runs("views", "linker", [RunRead(claimed.run_id, next_due=now + timedelta(1))])
    assert store.work_counts("views").requested == 0

    app = create_app(store, WebSettings(allowed_hosts=["testserver"]))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        assert (await client.get("/api/workflows/views/done-wf/tree")).status_code == 200
        assert store.work_counts("views").requested == 0  # closed: final, nothing to read
        assert (await client.get("/workflows/views/open-wf")).status_code == 200
    assert store.work_counts("views").requested == 1
