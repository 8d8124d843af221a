"""The values the call tree is made of, defined once for the linker, store, queries and UI.

Every one is a :class:`enum.StrEnum`, so a member *is* its string: it compares equal to the
text stored in the database and written in the JSON contract (``Status.FAILED == "failed"``).
"""

from __future__ import annotations

from enum import IntEnum, StrEnum

__all__ = [
    "ERROR_STATUSES",
    "STARTING_LINKS",
    "ErrorKind",
    "ExecutionStatus",
    "LinkKind",
    "LinkSource",
    "NodeKind",
    "Placement",
    "Status",
    "classify_error",
]


class NodeKind(StrEnum):
    """What a node of the call tree is (the contract's ``kind``)."""

    WORKFLOW = "workflow"
    ACTIVITY = "activity"
    NEXUS_OPERATION = "nexus_operation"
    NEXUS_HANDLER = "nexus_handler"
    CHILD_WORKFLOW = "child_workflow"
    HTTP_CALL = "http_call"
    SIGNAL = "signal"
    UPDATE = "update"


class Status(StrEnum):
    """Where a run or a call stands (the contract's ``status``)."""

    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    CANCELED = "canceled"
    TERMINATED = "terminated"
    # A call its caller closed on without waiting, whose outcome no record tells.
    ABANDONED = "abandoned"


ERROR_STATUSES: frozenset[Status] = frozenset({Status.FAILED, Status.TIMED_OUT, Status.TERMINATED})
"""Statuses that count as errors everywhere: search, tree, map, UI and export.

``canceled`` is not one: a cancellation is somebody's decision, not a failure. Nor is
``abandoned``: the caller chose not to wait, and nothing says the call went wrong.
"""


class ExecutionStatus(IntEnum):
    """Temporal's ``WorkflowExecutionStatus`` numbers, as ``DescribeWorkflowExecution``
    returns them."""

    RUNNING = 1
    COMPLETED = 2
    FAILED = 3
    CANCELED = 4
    TERMINATED = 5
    CONTINUED_AS_NEW = 6
    TIMED_OUT = 7

    @property
    def label(self) -> str:
        """The status in the contract's words (``continued_as_new`` has no tree status)."""
        return self.name.lower()


class LinkKind(StrEnum):
    """How a stored edge joins a caller to a handler workflow."""

    NEXUS = "nexus"
    ACTIVITY_WRAPPER = "activity_wrapper"
    CHILD = "child"
    # Messages reach a workflow that lives in its own tree: they never make a parent.
    SIGNAL = "signal"
    UPDATE = "update"


STARTING_LINKS: tuple[LinkKind, ...] = (LinkKind.NEXUS, LinkKind.ACTIVITY_WRAPPER, LinkKind.CHILD)
"""Link kinds by which a caller *started* its handler: the handler's caller is its parent."""


class LinkSource(StrEnum):
    """Which record an edge was read from; see :func:`tracer.query.graph.precedence`."""

    CALLER_HISTORY = "caller_history"
    HANDLER_HISTORY = "handler_history"
    OPERATION_TOKEN = "operation_token"
    HEADER = "header"


class Placement(StrEnum):
    """How a node hangs off its parent (the contract's ``link``)."""

    ROOT = "root"
    NEXUS = "nexus"
    ACTIVITY_WRAPPER = "activity_wrapper"
    CHILD = "child"
    CALL = "call"


class ErrorKind(StrEnum):
    """Why a call failed, in words a person on call recognizes (the interceptors record
    the same values in ``temporal.error.kind``)."""

    # A non-retryable application error that the handler or its activities raised on
    # purpose: a declined card is an answer, not a breakage.
    BUSINESS = "business"
    TIMEOUT = "timeout"
    CANCELED = "canceled"
    NOT_FOUND = "not_found"
    UNAUTHORIZED = "unauthorized"
    # Something broke: a worker crash (heartbeat timeout), a panic, a server error, or a
    # retryable error after its attempts ran out.
    INFRASTRUCTURE = "infrastructure"
    TERMINATED = "terminated"
    # An application failure whose history says nothing more (older records, spans).
    OPERATION_ERROR = "operation_error"


_KINDS = frozenset(kind.value for kind in ErrorKind)

_HANDLER_ERROR_KINDS = {
    "HandlerError.NOT_FOUND": ErrorKind.NOT_FOUND,
    "HandlerError.UNAUTHORIZED": ErrorKind.UNAUTHORIZED,
    "HandlerError.UNAUTHENTICATED": ErrorKind.UNAUTHORIZED,
    "HandlerError.REQUEST_TIMEOUT": ErrorKind.TIMEOUT,
    "HandlerError.UPSTREAM_TIMEOUT": ErrorKind.TIMEOUT,
    "HandlerError.INTERNAL": ErrorKind.INFRASTRUCTURE,
    "HandlerError.UNAVAILABLE": ErrorKind.INFRASTRUCTURE,
    "HandlerError.RESOURCE_EXHAUSTED": ErrorKind.INFRASTRUCTURE,
    "ServerError": ErrorKind.INFRASTRUCTURE,
    "PanicError": ErrorKind.INFRASTRUCTURE,
}


def classify_error(
    status: str, error_type: str | None, recorded: str | None = None
) -> ErrorKind | None:
    """The error kind of a failed run or call, from its status, the failure type that
    history recorded (``TimeoutError``, ``HandlerError.NOT_FOUND``, an application type...)
    and the kind read from the whole failure when history was parsed (``recorded``).

    The same kinds the interceptors write into ``temporal.error.kind``; ``None`` when the
    node did not fail.
    """
    if status == Status.CANCELED:
        return ErrorKind.CANCELED
    if status == Status.TERMINATED:
        return ErrorKind.TERMINATED
    if recorded is not None and recorded in _KINDS and status in ERROR_STATUSES:
        return ErrorKind(recorded)
    if status == Status.TIMED_OUT or error_type == "TimeoutError":
        return ErrorKind.TIMEOUT
    if status not in ERROR_STATUSES:
        return None
    return _HANDLER_ERROR_KINDS.get(error_type or "", ErrorKind.OPERATION_ERROR)
