"""Connections per namespace come from Temporal's own profile file and environment."""

from __future__ import annotations

from pathlib import Path

from tracer.devserver import DevServer, free_port
from tracer.link import Connections, HistoryLinker, load_connect_configs
from tracer.store import Store


def test_flags_and_environment_for_namespaces_without_a_profile() -> None:
    from_env = load_connect_configs(
        ["orders"], environ={"TEMPORAL_ADDRESS": "temporal.internal:7233"}
    )
    assert from_env["orders"]["target_host"] == "temporal.internal:7233"
    assert from_env["orders"]["namespace"] == "orders"
    flag_wins = load_connect_configs(
        ["orders"], address="flag:7233", environ={"TEMPORAL_ADDRESS": "env:7233"}
    )
    assert flag_wins["orders"]["target_host"] == "flag:7233"
    api_key = load_connect_configs(["orders"], environ={"TEMPORAL_API_KEY": "secret"})
    assert api_key["orders"]["api_key"] == "secret" and api_key["orders"]["tls"] is True


async def test_profile_file_routes_each_namespace_and_a_dead_one_stops_no_other(
    temporal_server: DevServer, tmp_path: Path, store: Store
) -> None:
    dead = f"127.0.0.1:{free_port()}"
    profiles = tmp_path / "temporal.toml"
    profiles.write_text(
        f"""
[profile.default]
address = "{dead}"

[profile.orders]
address = "{temporal_server.address}"
namespace = "orders"

[profile.billing]
address = "{temporal_server.address}"
namespace = "payments"
"""
    )
    configs = load_connect_configs(["orders", "payments", "inventory"], profile_file=profiles)
    assert configs["orders"]["target_host"] == temporal_server.address
    assert configs["payments"]["target_host"] == temporal_server.address  # by its namespace
    assert configs["inventory"]["target_host"] == dead  # the default profile

    linker = HistoryLinker(store, Connections(configs))
    report = await linker.poll_once()
    assert report.errors == 1
    states = {state.namespace: state for state in store.namespace_states()}
    assert states["orders"].status == "ok" and states["payments"].status == "ok"
    assert states["inventory"].status == "error"
    assert states["inventory"].last_error == f"cannot reach Temporal at {dead}: Connection refused"
