"""Optional namespace-scoped access tokens.

Without a tokens file the UI is open (it binds to 127.0.0.1 by default). With one, every
page and API call except the health checks needs a token, given as ``Authorization: Bearer
<token>`` or through the login form (which keeps it in an HTTP-only cookie). A viewer sees
full detail in the namespaces its token lists and only the structure (kind, name, status,
timing) of nodes in other namespaces.

The file is TOML::

    [tokens.payments-oncall]
    namespaces = ["payments"]
    token_sha256 = "9f86d081884c7d65..."   # sha256 hex of the token (preferred)

    [tokens.admin]
    namespaces = ["*"]                     # every namespace
    token = "plain-text-token"             # accepted too, for tests and local use
"""

from __future__ import annotations

import hashlib
import hmac
import tomllib
from dataclasses import dataclass
from pathlib import Path

from fastapi import Request

__all__ = [
    "COOKIE_NAME",
    "TokenRegistry",
    "Viewer",
    "load_tokens",
    "viewer_of",
]

COOKIE_NAME = "tracer_token"


@dataclass(frozen=True)
class Viewer:
    """Who is looking, and which namespaces it may see in full.

    Args:
        name: The token's name (``"anonymous"`` when no tokens file is configured).
        namespaces: Namespaces shown in full; ``None`` means every namespace.
    """

    name: str
    namespaces: frozenset[str] | None = None

    @property
    def restricted(self) -> bool:
        """Whether some namespaces are hidden from this viewer."""
        return self.namespaces is not None

    def can_see(self, namespace: str) -> bool:
        """Whether this viewer sees full detail of nodes in ``namespace``."""
        return self.namespaces is None or namespace in self.namespaces


OPEN_VIEWER = Viewer("anonymous")


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class TokenRegistry:
    """Token digests and the viewer each one stands for."""

    def __init__(self, viewers_by_digest: dict[str, Viewer]) -> None:
        self._viewers = viewers_by_digest

    def viewer(self, token: str | None) -> Viewer | None:
        """The viewer a presented token stands for, or ``None`` if it is unknown."""
        if not token:
            return None
        digest = _digest(token)
        found: Viewer | None = None
        for known, viewer in self._viewers.items():
            if hmac.compare_digest(known, digest):
                found = viewer
        return found


def load_tokens(path: Path) -> TokenRegistry:
    """Read a tokens file (format in the module docstring).

    Raises:
        ValueError: when an entry has no token or no namespaces list.
    """
    data = tomllib.loads(path.read_text())
    viewers: dict[str, Viewer] = {}
    for name, entry in dict(data.get("tokens", {})).items():
        namespaces = entry.get("namespaces")
        if not isinstance(namespaces, list) or not all(isinstance(n, str) for n in namespaces):
            raise ValueError(f"tokens file {path}: token {name!r} needs a namespaces list")
        digest = entry.get("token_sha256") or (_digest(entry["token"]) if "token" in entry else "")
        if not digest:
            raise ValueError(f"tokens file {path}: token {name!r} needs token or token_sha256")
        scope = None if "*" in namespaces else frozenset(namespaces)
        viewers[str(digest).lower()] = Viewer(str(name), scope)
    return TokenRegistry(viewers)


def presented_token(request: Request) -> str | None:
    """The token a request carries: bearer header first, then the login cookie."""
    header = request.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip()
    return request.cookies.get(COOKIE_NAME)


def viewer_of(request: Request) -> Viewer:
    """The request's viewer, as the access middleware resolved it."""
    viewer = getattr(request.state, "viewer", None)
    return viewer if isinstance(viewer, Viewer) else OPEN_VIEWER
