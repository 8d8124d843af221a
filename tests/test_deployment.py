"""docker-compose.yml and the Dockerfile agree with the code's defaults.

There is no container engine in CI, so this reads the files as a user's engine would and
checks what would break a `docker compose up`: ports, environment variable names, packages.
"""

from __future__ import annotations

import argparse
import re
import tomllib
from pathlib import Path
from typing import Any

import yaml

from tracer.cli import build_parser
from tracer.export import parse_export_endpoints

ROOT = Path(__file__).resolve().parent.parent


def _compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return data


def _serve_parser() -> argparse.ArgumentParser:
    subparsers = next(
        action
        for action in build_parser()._actions
        if isinstance(action, argparse._SubParsersAction)
    )
    parser: argparse.ArgumentParser = subparsers.choices["serve"]
    return parser


def _serve_defaults() -> dict[str, Any]:
    return {action.dest: action.default for action in _serve_parser()._actions}


def test_collector_ports_match_the_serve_defaults() -> None:
    collector = _compose()["services"]["collector"]
    defaults = _serve_defaults()
    published = {int(mapping.split(":")[1]) for mapping in collector["ports"]}
    assert published == {defaults["port"], defaults["otlp_port"], defaults["otlp_grpc_port"]}
    env = collector["environment"]
    assert int(env["TEMPORAL_TRACER_PORT"]) == defaults["port"]
    assert int(env["TEMPORAL_TRACER_OTLP_PORT"]) == defaults["otlp_port"]
    assert int(env["TEMPORAL_TRACER_OTLP_GRPC_PORT"]) == defaults["otlp_grpc_port"]
    assert env["TEMPORAL_TRACER_HOST"] == "0.0.0.0"  # reachable from outside the container


def test_every_collector_variable_is_one_serve_reads() -> None:
    help_text = _serve_parser().format_help()
    for name in _compose()["services"]["collector"]["environment"]:
        assert name in help_text, f"{name} is set in docker-compose.yml but serve ignores it"


def test_collector_reaches_temporal_and_postgres_by_service_name() -> None:
    services = _compose()["services"]
    env = services["collector"]["environment"]
    host, port = env["TEMPORAL_ADDRESS"].split(":")
    assert host in services and f"{port}:{port}" in services["temporal"]["ports"]
    db = env["TEMPORAL_TRACER_DB"]
    assert db.startswith("postgresql+psycopg://")
    postgres = services["postgres"]["environment"]
    user, password, host_db = re.match(r"postgresql\+psycopg://([^:]+):([^@]+)@(.+)", db).groups()  # type: ignore[union-attr]
    assert (user, password) == (postgres["POSTGRES_USER"], postgres["POSTGRES_PASSWORD"])
    assert host_db == f"postgres:5432/{postgres['POSTGRES_DB']}"
    namespaces = set(env["TEMPORAL_TRACER_NAMESPACES"].split(","))
    created = {
        arg.split("=", 1)[1]
        for arg in services["temporal"]["command"]
        if arg.startswith("--namespace=")
    }
    assert namespaces <= created


def test_dockerfile_ships_every_package_with_the_postgres_driver() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packages = project["tool"]["setuptools"]["packages"]["find"]["include"]
    for package in (pattern.rstrip("*") for pattern in packages):
        assert f"COPY {package} ./{package}" in dockerfile
    # The image runs `serve` and the sample (`demo --temporal-address`): the collector and
    # its PostgreSQL driver, both extras that exist.
    [extras] = re.findall(r"pip install [^']*'\.\[([a-z,]+)\]'", dockerfile)
    assert set(extras.split(",")) == {"collector", "postgres"}
    assert set(extras.split(",")) <= set(project["project"]["optional-dependencies"])
    defaults = _serve_defaults()
    exposed = {int(port) for port in re.search(r"^EXPOSE (.+)$", dockerfile, re.M).group(1).split()}  # type: ignore[union-attr]
    assert exposed == {defaults["port"], defaults["otlp_port"], defaults["otlp_grpc_port"]}
    assert f"127.0.0.1:{defaults['port']}/healthz" in dockerfile


def test_collector_forwards_to_jaeger_over_otlp_grpc() -> None:
    services = _compose()["services"]
    [destination] = parse_export_endpoints(
        services["collector"]["environment"]["TEMPORAL_TRACER_EXPORT_ENDPOINTS"]
    )
    assert destination.protocol == "grpc"
    host, port = destination.endpoint.removeprefix("http://").split(":")
    assert host == "jaeger" and port == "4317"  # Jaeger's OTLP gRPC port, with OTLP enabled
    assert services["jaeger"]["environment"]["COLLECTOR_OTLP_ENABLED"] == "true"


def test_sample_uses_flags_demo_has_and_reaches_the_collector() -> None:
    services = _compose()["services"]
    command = services["sample"]["command"]
    assert command[0] == "demo"
    flags = dict(arg.removeprefix("--").split("=", 1) for arg in command[1:])
    args = build_parser().parse_args(command)  # every flag is one demo accepts
    assert args.temporal_address == services["collector"]["environment"]["TEMPORAL_ADDRESS"]
    otlp_port = services["collector"]["environment"]["TEMPORAL_TRACER_OTLP_PORT"]
    assert flags["otlp-endpoint"] == f"http://collector:{otlp_port}/v1/traces"
    assert flags["tracer-url"].endswith(f":{_serve_defaults()['port']}")
