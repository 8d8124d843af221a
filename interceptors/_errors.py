"""Map SDK failures to a few error kinds that say what went wrong with a call."""

from __future__ import annotations

import asyncio

import nexusrpc
import temporalio.exceptions

__all__ = ["error_kind", "error_type"]

_HANDLER_KINDS = {
    nexusrpc.HandlerErrorType.UNAUTHORIZED: "unauthorized",
    nexusrpc.HandlerErrorType.UNAUTHENTICATED: "unauthorized",
    nexusrpc.HandlerErrorType.NOT_FOUND: "not_found",
    nexusrpc.HandlerErrorType.REQUEST_TIMEOUT: "timeout",
    nexusrpc.HandlerErrorType.UPSTREAM_TIMEOUT: "timeout",
}


def _chain(err: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    current: BaseException | None = err
    while current is not None and current not in seen and len(seen) < 16:
        seen.append(current)
        cause = getattr(current, "cause", None)
        current = cause if isinstance(cause, BaseException) else current.__cause__
    return seen


def error_kind(err: BaseException) -> str:
    """The kind of failure ``err`` is, for spans and for handlers that branch on it.

    One of ``"timeout"``, ``"unauthorized"``, ``"not_found"``, ``"canceled"``,
    ``"terminated"`` or ``"operation_error"`` (any other failure), found by walking the
    failure's cause chain (``NexusOperationError`` -> ``HandlerError`` / ``TimeoutError``...).
    """
    for item in _chain(err):
        if isinstance(item, temporalio.exceptions.TimeoutError):
            return "timeout"
        if isinstance(item, nexusrpc.HandlerError):
            kind = _HANDLER_KINDS.get(item.type)
            if kind is not None:
                return kind
        if isinstance(item, temporalio.exceptions.CancelledError | asyncio.CancelledError):
            return "canceled"
        if isinstance(item, temporalio.exceptions.TerminatedError):
            return "terminated"
    return "operation_error"


def error_type(err: BaseException) -> str:
    """The most specific error type name in the cause chain (``ApplicationError.type``...)."""
    for item in reversed(_chain(err)):
        if isinstance(item, temporalio.exceptions.ApplicationError) and item.type:
            return item.type
        if isinstance(item, nexusrpc.HandlerError):
            return f"HandlerError.{item.type.name}"
    return type(err).__name__
