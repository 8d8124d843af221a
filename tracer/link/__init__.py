"""Linking histories: connections per namespace, history parsing, discovery by time
cursors, the budget of Temporal calls and the linker loop."""

from ._budget import DEFAULT_CALLS_PER_SECOND, TokenBucket
from ._connections import Connections, load_connect_configs
from ._history import (
    decode_operation_token,
    describe_failure,
    failure_kind,
    failure_type,
    operation_token_json,
    parse_history,
)
from ._linker import HistoryLinker, PollReport
from ._pending import (
    MAX_DESCRIBES_PER_TREE,
    PENDING_MAX_AGE,
    PendingReader,
    refresh_tree_pending,
)
from ._pending_state import nexus_pending, pending_calls
from ._standalone import StandaloneOperations, operation_facts
from ._temporal import CallCounts

__all__ = [
    "DEFAULT_CALLS_PER_SECOND",
    "MAX_DESCRIBES_PER_TREE",
    "PENDING_MAX_AGE",
    "CallCounts",
    "Connections",
    "HistoryLinker",
    "PendingReader",
    "PollReport",
    "StandaloneOperations",
    "TokenBucket",
    "decode_operation_token",
    "describe_failure",
    "failure_kind",
    "failure_type",
    "load_connect_configs",
    "nexus_pending",
    "operation_facts",
    "operation_token_json",
    "parse_history",
    "pending_calls",
    "refresh_tree_pending",
]
