"""``temporal-tracer demo`` from a new user's point of view."""

from __future__ import annotations

import asyncio
import html
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit

import httpx
from playwright.sync_api import expect, sync_playwright
from sqlalchemy import func, select

from tests.conftest import CHROMIUM, CHROMIUM_ARGS, skip_or_fail
from tracer.collector import ServeSettings, run_collector
from tracer.db import Span
from tracer.demo.model import NAMESPACES
from tracer.devserver import DevServer, free_port


def _port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        # Nothing listening, as the demo checks its ports: a connection the receiver closed
        # (an idle exporter's, after its keep-alive) may linger in TIME_WAIT on the port.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _temporal_ui_api(url: str) -> dict[str, Any]:
    """GET from the Temporal UI's API, which answers 503 until it reaches the server."""
    for _ in range(50):
        response = httpx.get(url, timeout=10)
        if response.status_code != 503:
            break
        time.sleep(0.2)
    assert response.status_code == 200, (url, response.text)
    body: dict[str, Any] = response.json()
    return body


def _check_temporal_ui_links(ui: str, output: str, order_urls: list[str], page: str) -> None:
    """The printed links open the namespaces holding the demo's workflows (not the UI's
    empty ``default``), and each tree node's link names a run Temporal has, in its own
    namespace, on the run's history page."""
    listed = re.findall(
        rf"^ +(?:Temporal UI:)? +{re.escape(ui)}/namespaces/(\S+)/workflows$", output, re.M
    )
    assert listed == list(NAMESPACES), output
    order_ids = {url.rsplit("/", 1)[1] for url in order_urls}
    for namespace in listed:
        assert httpx.get(f"{ui}/namespaces/{namespace}/workflows", timeout=10).status_code == 200
        executions = _temporal_ui_api(f"{ui}/api/v1/namespaces/{namespace}/workflows")
        ids = {e["execution"]["workflowId"] for e in executions.get("executions", [])}
        assert ids, f"the demo left no workflow in {namespace}"
        if namespace == "orders":
            assert order_ids <= ids
    links = {html.unescape(h) for h in re.findall(r'class="temporal-ui" href="([^"]+)"', page)}
    assert {urlsplit(link).path.split("/")[2] for link in links} == set(NAMESPACES)
    for link in links:
        match = re.fullmatch(
            rf"{re.escape(ui)}/namespaces/([^/]+)/workflows/([^/]+)/([^/]+)/history", link
        )
        assert match, link
        namespace, workflow_id, run_id = (unquote(part) for part in match.groups())
        described = _temporal_ui_api(
            f"{ui}/api/v1/namespaces/{quote(namespace, safe='')}/workflows/"
            f"{quote(workflow_id, safe='')}?execution.runId={quote(run_id, safe='')}"
        )
        assert described["workflowExecutionInfo"]["execution"] == {
            "workflowId": workflow_id,
            "runId": run_id,
        }
        if namespace == "payments":
            _open_history_in_a_browser(link, workflow_id, run_id)


def _open_history_in_a_browser(link: str, workflow_id: str, run_id: str) -> None:
    """The Temporal Web UI shows that run's event history at the link."""
    if not os.path.exists(CHROMIUM):
        skip_or_fail(f"{CHROMIUM} is not installed (Debian package chromium)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.goto(link)
            main = page.locator("main")
            expect(main.get_by_text(run_id, exact=True).first).to_be_visible(timeout=30_000)
            expect(main.get_by_text(workflow_id, exact=True).first).to_be_visible()
            expect(main.get_by_text("Workflow Execution Started").first).to_be_attached()
        finally:
            browser.close()


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
        assert "ProcessPaymentWorkflow" in page.text
        assert '<span class="ns">payments</span>' in page.text
        ui = f"http://127.0.0.1:{ports['temporal-ui-port']}"
        _check_temporal_ui_links(ui, output, [url for _, url in order_urls.values()], page.text)
    finally:
        process.send_signal(signal.SIGINT)
        rest, _ = process.communicate(timeout=30)
    assert process.returncode == 0, rest
    assert "nothing left running" in rest
    # The embedded Temporal server and every listener are gone.
    assert all(_port_is_free(port) for port in ports.values()), ports


async def test_sample_fleet_against_an_existing_server_and_collector(
    temporal_server: DevServer, tmp_path: Path
) -> None:
    settings = ServeSettings(
        db_url=f"sqlite:///{tmp_path / 'tracer.db'}",
        namespaces=list(NAMESPACES),
        temporal_address=temporal_server.address,
        port=free_port(),
        otlp_port=free_port(),
        otlp_grpc_port=0,
        poll_interval=0.3,
    )
    async with run_collector(settings) as collector:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "tracer", "demo",
            f"--temporal-address={temporal_server.address}",
            f"--otlp-endpoint={collector.otlp_url}/v1/traces",
            f"--tracer-url={collector.ui_url}",
            f"--inventory-port={free_port()}",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, cwd=tmp_path,
        )  # fmt: skip
        assert process.stdout is not None
        lines: list[str] = []
        try:
            while not any("Sample orders placed" in line for line in lines):
                line = await asyncio.wait_for(process.stdout.readline(), timeout=120)
                assert line, "\n".join(lines)
                lines.append(line.decode().rstrip())
            urls = [
                line.split()[1]
                for line in lines
                if line.lstrip().startswith(("completed", "failed"))
            ]
            assert len(urls) == 4 and all(url.startswith(collector.ui_url) for url in urls)
            async with httpx.AsyncClient(timeout=10) as http:
                for _ in range(100):
                    trees = [(await http.get(url)).status_code for url in urls]
                    with collector.store.session() as session:
                        spans = session.scalar(
                            select(func.count())
                            .select_from(Span)
                            .where(Span.service_name == "demo-fleet")
                        )
                    if trees == [200] * 4 and spans:
                        break
                    await asyncio.sleep(0.2)
            assert trees == [200] * 4, lines
            assert spans, "the sample's workers sent no span to the collector"
        finally:
            process.send_signal(signal.SIGINT)
            await asyncio.wait_for(process.wait(), timeout=30)
        assert process.returncode == 0
