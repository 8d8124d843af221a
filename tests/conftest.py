"""Shared fixtures: a real Temporal dev server, databases, the sample fleet.

Under ``TRACER_REQUIRE_ALL=1`` (set by CI) a fixture whose real dependency is missing
fails the test instead of skipping it.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from temporalio.client import Client

from tracer.demo._model import ENDPOINTS, NAMESPACES
from tracer.devserver import DevServer, find_temporal_cli

REQUIRE_ALL = os.environ.get("TRACER_REQUIRE_ALL") == "1"
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"


def skip_or_fail(reason: str) -> None:
    """Skip the test, or fail it when CI requires every real dependency."""
    if REQUIRE_ALL:
        pytest.fail(f"{reason} (TRACER_REQUIRE_ALL=1 forbids skipping)")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    """Where tests leave files a person may want to look at (screenshots, logs)."""
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


@pytest.fixture(scope="session")
async def temporal_server(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[DevServer]:
    """A real ``temporal server start-dev`` with the sample's namespaces and Nexus endpoints,
    ready to use.

    Started once per test session on free ports; its log is kept under ``test-artifacts``.
    """
    try:
        find_temporal_cli()
    except FileNotFoundError as err:
        skip_or_fail(str(err))
    ARTIFACTS.mkdir(exist_ok=True)
    server = DevServer(
        namespaces=NAMESPACES,
        endpoints=ENDPOINTS,
        db_file=tmp_path_factory.mktemp("temporal") / "temporal.db",
        log_file=ARTIFACTS / "temporal-server.log",
    )
    server.start()
    try:
        await server.wait_ready()
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
async def temporal_client(temporal_server: DevServer) -> Client:
    """A client on the ``default`` namespace of the session's server."""
    return await Client.connect(temporal_server.address, namespace="default")


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A fresh SQLite database file for one test."""
    return f"sqlite:///{tmp_path / 'tracer.db'}"


def which_or_fail(program: str) -> str:
    """Path of ``program``, or skip/fail when it is not installed."""
    found = shutil.which(program)
    if found is None:
        skip_or_fail(f"{program} is not installed")
    assert found is not None
    return found
