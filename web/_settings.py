"""What the web app is configured with beyond the store."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

from tracer.link import Connections

from ._access import TokenRegistry, load_tokens

__all__ = ["LOCAL_HOSTS", "WebSettings"]

LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")
"""The host names a UI bound to the loopback address is reached by."""


@dataclass
class WebSettings:
    """What the UI needs beyond the store.

    Args:
        temporal_ui_urls: Base URL of the Temporal Web UI per namespace; the key ``"*"``
            applies to namespaces not listed.
        tokens_file: A TOML file of namespace-scoped access tokens (see ``web._access``);
            ``None`` leaves the UI open to whoever reaches it.
        connections: Temporal connections per namespace; with them the node detail asks
            Temporal live (task-queue pollers, the handler workflow's pending work) when it
            diagnoses a failed cross-namespace call.
        allowed_hosts: The host names (``Host`` header, port aside) the UI answers to;
            ``"*"`` allows any, ``"*.example.com"`` subdomains. Others get 400, so a page
            on another site cannot reach the UI through DNS rebinding. The health checks
            answer any host.
        failed_login_limit: Failed token checks a client may make per minute before it
            gets 429 with ``Retry-After``.
    """

    temporal_ui_urls: dict[str, str] = field(default_factory=dict)
    tokens_file: Path | None = None
    connections: Connections | None = None
    allowed_hosts: list[str] = field(default_factory=lambda: list(LOCAL_HOSTS))
    failed_login_limit: int = 10
    _registry: TokenRegistry | None = field(default=None, init=False, repr=False)

    def temporal_ui_link(self, namespace: str, workflow_id: str, run_id: str) -> str | None:
        """Link to a run's history in the Temporal Web UI, when a base URL is known."""
        base = self.temporal_ui_urls.get(namespace) or self.temporal_ui_urls.get("*")
        if not base:
            return None
        return (
            f"{base.rstrip('/')}/namespaces/{quote(namespace, safe='')}/workflows/"
            f"{quote(workflow_id, safe='')}/{quote(run_id, safe='')}/history"
        )

    def token_registry(self) -> TokenRegistry | None:
        """The tokens file, read once; ``None`` when access is open."""
        if self.tokens_file is None:
            return None
        if self._registry is None:
            self._registry = load_tokens(self.tokens_file)
        return self._registry
