"""UI servers over the linked sample's store (open, token-protected) and over a store
holding hostile names. The browser fixtures are shared, in ``tests/conftest.py``."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import uvicorn

from tests.conftest import LinkedSample
from tracer.db import Span, create_db_engine, upgrade_database
from tracer.demo.model import NAMESPACES
from tracer.devserver import DevServer, free_port
from tracer.link import Connections, load_connect_configs
from tracer.store import CallFacts, RunFacts, Store
from web import WebSettings, create_app

TEMPORAL_UI = "http://temporal-ui.example:8233"
PAYMENTS_TOKEN = "payments-oncall-token"
ADMIN_TOKEN = "admin-token"
EVIL = "<script>alert(1)</script>"


@dataclass
class UiServer:
    """A UI served by uvicorn in the test session's event loop."""

    url: str
    store: Store


async def _serve(app: object, port: int) -> tuple[uvicorn.Server, asyncio.Task[None]]:
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")  # type: ignore[arg-type]
    )
    task = asyncio.create_task(server.serve())
    for _ in range(200):
        if server.started:
            break
        await asyncio.sleep(0.02)
    assert server.started, "UI server did not start"
    return server, task


@pytest.fixture(scope="session")
async def ui(linked_sample: LinkedSample, temporal_server: DevServer) -> AsyncIterator[UiServer]:
    """The open UI over the linked sample, with Temporal Web UI links and live diagnosis."""
    store = linked_sample.collector.store
    settings = WebSettings(
        temporal_ui_urls={"*": TEMPORAL_UI},
        connections=Connections(
            load_connect_configs(list(NAMESPACES), address=temporal_server.address)
        ),
    )
    port = free_port()
    server, task = await _serve(create_app(store, settings), port)
    try:
        yield UiServer(f"http://127.0.0.1:{port}", store)
    finally:
        server.should_exit = True
        await task


@pytest.fixture(scope="session")
async def locked_ui(
    linked_sample: LinkedSample, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[UiServer]:
    """The UI over the linked sample with namespace-scoped tokens: ``payments`` only, and
    an admin token for every namespace."""
    tokens = tmp_path_factory.mktemp("tokens") / "tokens.toml"
    tokens.write_text(
        f'[tokens.payments-oncall]\nnamespaces = ["payments"]\ntoken = "{PAYMENTS_TOKEN}"\n\n'
        f'[tokens.admin]\nnamespaces = ["*"]\ntoken = "{ADMIN_TOKEN}"\n'
    )
    store = linked_sample.collector.store
    port = free_port()
    server, task = await _serve(create_app(store, WebSettings(tokens_file=tokens)), port)
    try:
        yield UiServer(f"http://127.0.0.1:{port}", store)
    finally:
        server.should_exit = True
        await task


@pytest.fixture(scope="session")
async def hostile_ui(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[UiServer]:
    """A UI over a store holding a run whose id, type, error and span attributes are HTML."""
    path = tmp_path_factory.mktemp("hostile") / "tracer.db"
    engine = create_db_engine(f"sqlite:///{path}")
    upgrade_database(engine)
    store = Store(engine)
    start = datetime.now(UTC) - timedelta(minutes=1)
    store.save_run(
        RunFacts(
            namespace="orders",
            workflow_id=EVIL,
            run_id="run-evil",
            workflow_type="<b>Bold</b>Workflow",
            task_queue="q",
            status="failed",
            start_time=start,
            close_time=start + timedelta(seconds=2),
            error_type="<i>Err</i>",
            error_message="<img src=x onerror=alert(2)>",
            history_length=9,
            calls=[
                CallFacts(
                    event_id=5,
                    kind="activity",
                    name="<svg onload=alert(3)>",
                    start_time=start + timedelta(milliseconds=100),
                    end_time=start + timedelta(seconds=1),
                    status="failed",
                    error_type="Boom",
                    error_message="</template><script>alert(4)</script>",
                    activity_id="1",
                )
            ],
        )
    )
    with store.session.begin() as session:
        session.add(
            Span(
                trace_id="0" * 31 + "1",
                span_id="0" * 15 + "1",
                name="RunWorkflow:<b>Bold</b>Workflow",
                start_time_unix_nano=int(start.timestamp() * 1e9),
                end_time_unix_nano=int(start.timestamp() * 1e9) + 2_000_000_000,
                namespace="orders",
                workflow_id=EVIL,
                run_id="run-evil",
                attributes='{"note": {"stringValue": "<img src=y onerror=alert(5)>"}}',
                received_at=datetime.now(UTC),
            )
        )
    port = free_port()
    server, task = await _serve(create_app(store), port)
    try:
        yield UiServer(f"http://127.0.0.1:{port}", store)
    finally:
        server.should_exit = True
        await task
        engine.dispose()


@pytest.fixture(scope="session")
def shots(artifacts_dir: Path) -> Path:
    """Where the browser tests save their screenshots."""
    folder = artifacts_dir / "web"
    folder.mkdir(exist_ok=True)
    return folder
