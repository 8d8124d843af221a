"""Linking histories: connections per namespace, history parsing and the linker loop."""

from ._connections import Connections, load_connect_configs
from ._history import (
    decode_operation_token,
    describe_failure,
    failure_kind,
    operation_token_json,
    parse_history,
)
from ._linker import HistoryLinker, PollReport

__all__ = [
    "Connections",
    "HistoryLinker",
    "PollReport",
    "decode_operation_token",
    "describe_failure",
    "failure_kind",
    "load_connect_configs",
    "operation_token_json",
    "parse_history",
]
