"""The store: one repository for every write and every read of the collector's data.

The linker writes :class:`RunFacts`, the receiver writes span rows; the UI and API read
trees, search pages, the namespace map, spans, endpoints and namespace states, all as plain
values. Nothing above this package opens a database session for those.
"""

from ._facts import CallFacts, LinkFacts, RunFacts, WaitFacts
from ._pending import OpenRun
from ._store import (
    LINKER_STALE_AFTER,
    NamespaceStatus,
    NexusEndpoint,
    NodeDetail,
    Readiness,
    RunProgress,
    Store,
    StoreUnavailableError,
)
from ._summaries import forget_trees
from ._work import ClaimedRun, Priority, RunRead, WorkCounts

__all__ = [
    "LINKER_STALE_AFTER",
    "CallFacts",
    "ClaimedRun",
    "LinkFacts",
    "NamespaceStatus",
    "NexusEndpoint",
    "NodeDetail",
    "OpenRun",
    "Priority",
    "Readiness",
    "RunFacts",
    "RunProgress",
    "RunRead",
    "Store",
    "StoreUnavailableError",
    "WaitFacts",
    "WorkCounts",
    "forget_trees",
]
