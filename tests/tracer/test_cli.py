"""``temporal-tracer`` as a user runs it: a real process, real ports, the real dev server."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import create_engine, inspect

from tracer.devserver import DevServer, free_port

CLI = [sys.executable, "-m", "tracer"]


def run_cli(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args], capture_output=True, text=True, timeout=60, env=env, cwd=cwd, check=False
    )


def test_help_lists_the_commands_and_their_environment_variables() -> None:
    top = run_cli("--help")
    assert top.returncode == 0
    for command in ("serve", "db", "demo"):
        assert command in top.stdout
    serve = run_cli("serve", "--help")
    for text in (
        "--namespace",
        "--otlp-port",
        "TEMPORAL_TRACER_DB",
        "TEMPORAL_ADDRESS",
        "TEMPORAL_CONFIG_FILE",
    ):
        assert text in serve.stdout


def test_db_upgrade_creates_the_schema_and_can_run_twice(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    for _ in range(2):
        result = run_cli("db", "upgrade", "--db", url)
        assert result.returncode == 0, result.stderr
    tables = set(inspect(create_engine(url)).get_table_names())
    assert {"workflow_runs", "calls", "links", "spans", "alembic_version"} <= tables


def test_serve_without_namespace_says_what_is_missing() -> None:
    env = {k: v for k, v in os.environ.items() if k != "TEMPORAL_TRACER_NAMESPACES"}
    result = run_cli("serve", env=env)
    assert result.returncode == 2
    assert "--namespace" in result.stderr


def test_a_busy_port_is_one_clear_line(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = run_cli("demo", "--port", str(port), cwd=tmp_path)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert lines == [
        f"temporal-tracer: port {port} (tracer UI) is already in use on 127.0.0.1: "
        "choose another with --port"
    ]


@pytest.fixture
def serve_process(
    temporal_server: DevServer, tmp_path: Path
) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    """``temporal-tracer serve`` configured by environment variables only."""
    port = free_port()
    env = {
        **os.environ,
        "TEMPORAL_ADDRESS": temporal_server.address,
        "TEMPORAL_TRACER_NAMESPACES": "orders,payments,no-such-namespace",
        "TEMPORAL_TRACER_DB": f"sqlite:///{tmp_path / 'serve.db'}",
        "TEMPORAL_TRACER_PORT": str(port),
        "TEMPORAL_TRACER_OTLP_PORT": str(free_port()),
        "TEMPORAL_TRACER_OTLP_GRPC_PORT": "0",
    }
    process = subprocess.Popen(
        [*CLI, "serve"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        yield f"http://127.0.0.1:{port}", process
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_serve_reports_an_unknown_namespace_and_links_the_others(
    serve_process: tuple[str, subprocess.Popen[str]],
) -> None:
    url, process = serve_process
    deadline = time.monotonic() + 30
    states: dict[str, dict[str, object]] = {}
    while time.monotonic() < deadline:
        try:
            response = httpx.get(f"{url}/api/namespaces", timeout=2)
            states = {item["namespace"]: item for item in response.json()["namespaces"]}
        except httpx.HTTPError:
            states = {}
        if len(states) == 3 and all(s["status"] != "starting" for s in states.values()):
            break
        time.sleep(0.2)
    assert httpx.get(f"{url}/healthz").status_code == 200
    assert states["orders"]["status"] == "ok" and states["payments"]["status"] == "ok"
    unknown = states["no-such-namespace"]
    assert unknown["status"] == "error"
    assert "no-such-namespace" in str(unknown["last_error"]) or "not found" in str(
        unknown["last_error"]
    )

    process.send_signal(signal.SIGTERM)
    output, _ = process.communicate(timeout=20)
    assert process.returncode == 0
    # One clear log line for the bad namespace, not one per poll.
    assert output.count("namespace no-such-namespace:") == 1, output
