"""``temporal-tracer demo`` from a new user's point of view."""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tracer.devserver import free_port


def _port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def test_demo_serves_the_order_trees_and_ctrl_c_stops_everything(tmp_path: Path) -> None:
    ports = {
        name: free_port()
        for name in ("port", "otlp-port", "temporal-port", "temporal-ui-port", "inventory-port")
    }
    args = [f"--{name}={port}" for name, port in ports.items()]
    process = subprocess.Popen(
        [sys.executable, "-m", "tracer", "demo", *args],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert process.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline:
            line = process.stdout.readline()
            if not line:
                break
            lines.append(line.rstrip())
            if "Press Ctrl-C to stop." in line:
                break
        output = "\n".join(lines)
        assert "Press Ctrl-C to stop." in output, output
        order_urls = dict(
            (url.rsplit("-", 1)[1], (status, url))
            for status, url in re.findall(r"^\s+(completed|failed)\s+(http://\S+)", output, re.M)
        )
        assert {key: status for key, (status, _) in order_urls.items()} == {
            "ok": "completed",
            "poll": "completed",
            "declined": "failed",
            "slow": "failed",
        }
        # The demo's workers export spans to the collector: the sync Nexus handler, which
        # has no history, gets its namespace and timing from its own span (by request id).
        api_url = order_urls["ok"][1].replace("/workflows/", "/api/workflows/") + "/tree"
        handler: dict[str, object] = {}
        for _ in range(50):
            quote = httpx.get(api_url, timeout=10).json()["root"]["children"][1]
            handler = quote["children"][0]
            if "span_id" in handler["details"]:
                break
            time.sleep(0.2)
        assert handler["kind"] == "nexus_handler" and handler["namespace"] == "payments"
        assert "span_id" in handler["details"], handler
        page = httpx.get(order_urls["ok"][1], timeout=10)
        assert page.status_code == 200
        assert "ProcessPaymentWorkflow" in page.text and 'data-namespace="payments"' in page.text
        assert f"http://127.0.0.1:{ports['temporal-ui-port']}" in output
    finally:
        process.send_signal(signal.SIGINT)
        rest, _ = process.communicate(timeout=30)
    assert process.returncode == 0, rest
    assert "nothing left running" in rest
    # The embedded Temporal server and every listener are gone.
    assert all(_port_is_free(port) for port in ports.values()), ports
