"""Background jobs: the shared periodic loop, leases between collectors, retention and
tree summaries."""

from ._leases import DEFAULT_LEASE_TTL, LeaseKeeper
from ._loop import LeaseHolder, run_periodically, sleep_unless_stopped
from ._retention import RETENTION_LEASE, RetentionReport, parse_duration, purge_once, run_retention
from ._summaries import run_summaries

__all__ = [
    "DEFAULT_LEASE_TTL",
    "RETENTION_LEASE",
    "LeaseHolder",
    "LeaseKeeper",
    "RetentionReport",
    "parse_duration",
    "purge_once",
    "run_periodically",
    "run_retention",
    "run_summaries",
    "sleep_unless_stopped",
]
