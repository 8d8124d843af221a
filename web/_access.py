"""Optional namespace-scoped access tokens.

Without a tokens file the UI is open (it binds to 127.0.0.1 by default). With one, every
page and API call except the health checks needs a token, given as ``Authorization: Bearer
<token>`` or through the login form (which keeps it in an HTTP-only cookie). A viewer sees
full detail in the namespaces its token lists and only the structure (kind, name, status,
timing) of nodes in other namespaces: the store applies that rule
(``tracer.query.Scope``). Failed token checks are counted per client
(:class:`FailedLogins`); the login form takes posts from this site's own pages only
(:func:`same_origin`); the app answers only to its allowed host names (:func:`host_allowed`).

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
import math
import threading
import time
import tomllib
from collections import OrderedDict, deque
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from fastapi import Request

__all__ = [
    "COOKIE_NAME",
    "FailedLogins",
    "TokenRegistry",
    "Viewer",
    "client_of",
    "host_allowed",
    "load_tokens",
    "request_host",
    "same_origin",
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


class FailedLogins:
    """Failed token checks per client, to slow guessing down: after ``limit`` failures
    within ``window`` seconds a client gets 429 until the oldest of them is that old.

    Every token check counts (the login form, a bearer header, a cookie), and while a
    client is held back even a right token waits: otherwise each answer would still say
    whether a guess was right. Memory is bounded: the least recently failing clients are
    forgotten first.

    Args:
        limit: Failures allowed per window.
        window: Seconds a failure is remembered.
        max_clients: Clients remembered at most.
    """

    def __init__(self, limit: int = 10, window: float = 60.0, max_clients: int = 10_000) -> None:
        self.limit = limit
        self.window = window
        self.max_clients = max_clients
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()
        self._lock = threading.Lock()

    def retry_after(self, client: str, now: float | None = None) -> int | None:
        """Seconds ``client`` must wait before its next token check, or ``None``."""
        now = time.monotonic() if now is None else now
        with self._lock:
            failures = self._failures.get(client)
            if failures is None:
                return None
            while failures and failures[0] <= now - self.window:
                failures.popleft()
            if not failures:
                del self._failures[client]
                return None
            if len(failures) < self.limit:
                return None
            return max(1, math.ceil(failures[0] + self.window - now))

    def failed(self, client: str, now: float | None = None) -> None:
        """Count a failed token check."""
        now = time.monotonic() if now is None else now
        with self._lock:
            failures = self._failures.pop(client, None) or deque(maxlen=self.limit)
            failures.append(now)
            self._failures[client] = failures  # most recent last
            while len(self._failures) > self.max_clients:
                self._failures.popitem(last=False)

    def succeeded(self, client: str) -> None:
        """Forget a client's failures once it presented a valid token."""
        with self._lock:
            self._failures.pop(client, None)


def client_of(request: Request) -> str:
    """Who is asking, for counting failures: the client address (the proxy's
    ``X-Forwarded-For`` only from addresses uvicorn trusts, ``--forwarded-allow-ips``)."""
    return request.client.host if request.client else "unknown"


def request_host(request: Request) -> str | None:
    """The host name the request was sent to (its ``Host`` header, without the port),
    lower-cased; ``None`` when the header is missing or malformed."""
    header = request.headers.get("host", "")
    try:
        host = urlsplit(f"//{header}").hostname
    except ValueError:
        return None
    return host or None


def host_allowed(host: str | None, allowed: Iterable[str]) -> bool:
    """Whether ``host`` is one of ``allowed`` (``"*"`` allows any, ``"*.example.com"``
    the subdomains of ``example.com``)."""
    if host is None:
        return False
    for pattern in allowed:
        pattern = pattern.lower()
        if pattern == "*" or pattern == host:
            return True
        if pattern.startswith("*.") and host.endswith(pattern[1:]):
            return True
    return False


_DEFAULT_PORTS = {"http": 80, "https": 443}


def _endpoint(scheme: str, netloc: str) -> tuple[str, int | None] | None:
    """``(host, port)`` of a URL's network location, the scheme's port when none is
    written; ``None`` when malformed."""
    try:
        parts = urlsplit(f"//{netloc}")
        port = parts.port
    except ValueError:
        return None
    if not parts.hostname:
        return None
    return parts.hostname, port if port is not None else _DEFAULT_PORTS.get(scheme)


def same_origin(request: Request) -> bool:
    """Whether a state-changing request comes from this site's own pages: its ``Origin``
    (else its ``Referer``) names the host and port the request was sent to. A request
    with neither header is not a browser's cross-site form and passes.

    Behind a TLS proxy, the request's scheme is HTTPS only when uvicorn trusts the proxy's
    ``X-Forwarded-Proto`` (``--forwarded-allow-ips``).
    """
    origin = request.headers.get("origin")
    source = origin if origin is not None else request.headers.get("referer")
    if source is None:
        return True
    try:
        parts = urlsplit(source)
    except ValueError:
        return False
    if parts.scheme not in _DEFAULT_PORTS:  # "null": sandboxed frames, file: pages
        return False
    sent_from = _endpoint(parts.scheme, parts.netloc)
    sent_to = _endpoint(request.url.scheme, request.headers.get("host", ""))
    return sent_from is not None and sent_from == sent_to
