"""Linking histories: connections per namespace, history parsing, discovery by time
cursors, the budget of Temporal calls and the linker loop."""

from ._budget import DEFAULT_CALLS_PER_SECOND, TokenBucket
from ._connections import Connections, load_connect_configs
from ._history import (
    decode_operation_token,
    describe_failure,
    operation_token_json,
    parse_history,
)
from ._linker import HistoryLinker, PollReport
from ._temporal import CallCounts

__all__ = [
    "DEFAULT_CALLS_PER_SECOND",
    "CallCounts",
    "Connections",
    "HistoryLinker",
    "PollReport",
    "TokenBucket",
    "decode_operation_token",
    "describe_failure",
    "load_connect_configs",
    "operation_token_json",
    "parse_history",
]
