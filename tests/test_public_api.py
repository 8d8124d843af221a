"""The public names of the collector's packages: changing them breaks users' imports."""

from __future__ import annotations

import tracer.collector
import tracer.devserver
import web


def test_collector_exports() -> None:
    assert tracer.collector.__all__ == [
        "Collector",
        "ServeSettings",
        "TreeNode",
        "build_tree",
        "run_collector",
        "serve_forever",
    ]
    assert all(hasattr(tracer.collector, name) for name in tracer.collector.__all__)


def test_devserver_exports() -> None:
    assert tracer.devserver.__all__ == [
        "DevServer",
        "NexusEndpoint",
        "PortBusyError",
        "create_nexus_endpoints",
        "ensure_port_free",
        "find_temporal_cli",
        "free_port",
        "wait_for_server",
    ]
    assert all(hasattr(tracer.devserver, name) for name in tracer.devserver.__all__)


def test_web_exports() -> None:
    assert web.__all__ == ["WebSettings", "create_app"]
