"""Free ports and busy ones: what the collector and the dev server check before binding."""

from __future__ import annotations

import socket

__all__ = ["PortBusyError", "ensure_port_free", "free_port"]


class PortBusyError(RuntimeError):
    """A port the caller asked for is already in use."""


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port that is free on ``host`` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def ensure_port_free(
    port: int, what: str, host: str = "127.0.0.1", flag: str | None = None
) -> None:
    """Raise :class:`PortBusyError` naming ``what`` (and ``flag``, the option that
    changes the port) if ``port`` cannot be bound."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # As servers bind: connections of a stopped server in TIME_WAIT don't make it busy.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as err:
            fix = f": choose another with {flag}" if flag else ""
            raise PortBusyError(f"port {port} ({what}) is already in use on {host}{fix}") from err
