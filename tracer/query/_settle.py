"""Where a call stands once its caller has closed: the one rule for calls left in flight.

A caller's history stops at its close. A Nexus operation it cancelled and did not wait for
(its last word is ``NexusOperationCancelRequested``), an operation it abandoned, a child
it left running under an abandon policy, all stay open there forever, although the call
went on to end somewhere else. So, once the caller has closed, a call its history leaves
running is never ``running``:

- it takes the final state of its handler run (the handler workflow of an operation, the
  child run of a child workflow): status, end time and error;
- when no handler run is known, or the handler still runs, it is ``abandoned``, ending
  when the caller closed.

The tree builder applies it to every call node, so the tree JSON, its figures, search
summaries, the map and the UI all see the same answer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from tracer.domain import Status

if TYPE_CHECKING:  # the tree builder imports this module
    from ._tree import TreeNode

__all__ = ["SETTLED_BY", "Outcome", "settle"]

SETTLED_BY = "settled_by"
"""The ``details`` key that says what settled a call: ``handler`` or ``caller_closed``."""

_CANCELED_ERROR = {"type": "CanceledError", "message": Status.CANCELED.value}


@dataclass(frozen=True)
class Outcome:
    """Where a handler run stands: a run's status, times and error."""

    status: str
    start_time: datetime | None
    end_time: datetime | None
    error: dict[str, str] | None = None


def settle(call: TreeNode, caller: TreeNode, handlers: Sequence[Outcome]) -> None:
    """Settle ``call`` (made by ``caller``) in place when its caller closed on it.

    Args:
        call: A call node as the caller's history shows it.
        caller: The node of the run that made the call.
        handlers: The runs that handled the call (a continued-as-new chain may hold
            several: the one that started last has the final word).
    """
    if call.status != Status.RUNNING or caller.status == Status.RUNNING:
        return
    earliest = datetime.min.replace(tzinfo=UTC)
    last = max(handlers, key=lambda h: h.start_time or earliest, default=None)
    if last is not None and last.status != Status.RUNNING:
        call.status = last.status
        call.end_time = last.end_time
        # Called off like a call whose cancellation the caller waited for.
        call.error = last.error or (_CANCELED_ERROR if last.status == Status.CANCELED else None)
        call.details[SETTLED_BY] = "handler"
        return
    call.status = Status.ABANDONED
    call.end_time = caller.end_time
    call.error = None
    call.details[SETTLED_BY] = "caller_closed"
