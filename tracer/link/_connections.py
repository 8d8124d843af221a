"""Temporal connections per namespace, from Temporal's own environment configuration.

A namespace uses the profile of the same name in the profile file (``temporal.toml``,
``temporalio.envconfig`` format) when there is one; otherwise the default profile with the
usual ``TEMPORAL_*`` environment variables applied, and ``--temporal-address`` on top.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from temporalio.client import Client
from temporalio.envconfig import ClientConfig, ClientConfigProfile, ClientConnectConfig

__all__ = ["Connections", "load_connect_configs"]

logger = logging.getLogger(__name__)


def load_connect_configs(
    namespaces: list[str],
    *,
    address: str | None = None,
    profile_file: Path | None = None,
    environ: Mapping[str, str] | None = None,
) -> dict[str, ClientConnectConfig]:
    """Connection settings for each namespace.

    Args:
        namespaces: Namespaces to connect to.
        address: ``host:port`` for namespaces without a profile of their own.
        profile_file: A TOML profile file; a profile named after a namespace (or whose
            ``namespace`` is that namespace) is used for it.
        environ: Environment for the default profile (the process's by default).
    """
    profiles: Mapping[str, ClientConfigProfile] = {}
    if profile_file is not None:
        profiles = ClientConfig.load(config_source=profile_file).profiles
    by_namespace = {
        profile.namespace: profile for profile in profiles.values() if profile.namespace
    }
    default = ClientConfigProfile.load(
        disable_file=profile_file is None,
        config_source=profile_file,
        override_env_vars=environ,
    )
    configs: dict[str, ClientConnectConfig] = {}
    for namespace in namespaces:
        profile = profiles.get(namespace) or by_namespace.get(namespace)
        if profile is not None:
            config = profile.to_client_connect_config()
        else:
            config = default.to_client_connect_config()
            if address:
                config["target_host"] = address
        config.setdefault("target_host", "localhost:7233")
        config["namespace"] = namespace
        configs[namespace] = config
    return configs


class Connections:
    """Lazily connected, cached clients per namespace."""

    def __init__(self, configs: Mapping[str, ClientConnectConfig]) -> None:
        self.configs = dict(configs)
        self._clients: dict[str, Client] = {}
        self._lock = asyncio.Lock()

    @property
    def namespaces(self) -> list[str]:
        """The configured namespaces, in configuration order."""
        return list(self.configs)

    def address(self, namespace: str) -> str:
        """The ``host:port`` a namespace is reached at."""
        return str(self.configs[namespace].get("target_host", ""))

    async def client(self, namespace: str) -> Client:
        """A connected client for ``namespace`` (raises if it cannot connect)."""
        async with self._lock:
            client = self._clients.get(namespace)
            if client is None:
                config: dict[str, Any] = dict(self.configs[namespace])
                client = await Client.connect(**config)
                self._clients[namespace] = client
            return client

    def forget(self, namespace: str) -> None:
        """Drop a cached client, so that the next call reconnects."""
        self._clients.pop(namespace, None)
