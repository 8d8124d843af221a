"""Query and path parameters shared by the pages and the JSON API, each with a bound.

Every number has a range, every id a length limit, and anything outside them is a 400 with
a one-line ``detail`` naming the parameter, never a 500 or a slow query.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime, timedelta

from fastapi import HTTPException, Request

from tracer.domain import NodeKind, Status
from tracer.query import TraceFilter

__all__ = [
    "MAX_ID_BYTES",
    "MAX_MIN_DURATION_S",
    "MAX_NAMESPACE_BYTES",
    "MAX_NODE_INDEX",
    "MAX_PAGE",
    "MAX_PAGE_SIZE",
    "MAX_RUN_ID_BYTES",
    "PAGE_SIZES",
    "STATUSES",
    "WINDOWS",
    "bad_request",
    "bounded_float",
    "bounded_int",
    "bounded_text",
    "echo",
    "filter_from_query",
    "optional_text",
    "parse_window",
    "window_start",
]

STATUSES = [status.value for status in Status]
# What a tree's root can be: a workflow, or a standalone Nexus operation.
ROOT_KINDS = [NodeKind.WORKFLOW.value, NodeKind.NEXUS_OPERATION.value]
WINDOWS = {"15m": 900, "1h": 3600, "6h": 21600, "24h": 86400, "7d": 604800, "30d": 2592000}
PAGE_SIZES = (10, 25, 50, 100)
MAX_PAGE_SIZE = 200
# Deep pages are offsets the database walks: past this, narrow the time range instead.
MAX_PAGE = 10_000
# Temporal's default limit on workflow ids (and types, task queues, activity ids).
MAX_ID_BYTES = 1000
MAX_NAMESPACE_BYTES = 255
# Run ids are UUIDs; the store keeps 64 characters.
MAX_RUN_ID_BYTES = 64
# Ten years: a longer minimum duration matches nothing any store holds.
MAX_MIN_DURATION_S = 10 * 365 * 86400.0
MAX_NODE_INDEX = 1_000_000
# ISO 8601 times shorter than this are plenty; longer ones are not times.
_MAX_TIME_CHARS = 64
# Checked before int(): a huge digit string costs time and is out of range anyway.
_WHOLE_NUMBER = re.compile(r"[+-]?[0-9]{1,12}")


def bad_request(detail: str) -> HTTPException:
    """A 400 with a one-line ``detail``."""
    return HTTPException(status_code=400, detail=detail)


def echo(value: str, limit: int = 80) -> str:
    """``value`` quoted for an error message, cut to ``limit`` characters."""
    return repr(value if len(value) <= limit else value[:limit] + "…")


def bounded_text(value: str, name: str, max_bytes: int) -> str:
    """``value`` if it is at most ``max_bytes`` of UTF-8 and holds no control character.

    Raises:
        HTTPException: 400 otherwise.
    """
    if len(value) > max_bytes or len(value.encode("utf-8", "surrogatepass")) > max_bytes:
        raise bad_request(f"{name}: at most {max_bytes} bytes")
    if any(ord(char) < 32 or ord(char) == 127 for char in value):
        raise bad_request(f"{name}: control characters are not allowed")
    return value


def optional_text(value: str | None, name: str, max_bytes: int) -> str | None:
    """:func:`bounded_text` for an optional parameter (``None`` or empty stays ``None``)."""
    return bounded_text(value, name, max_bytes) if value else None


def bounded_int(value: str, name: str, low: int, high: int) -> int:
    """A whole number from ``low`` to ``high``.

    Raises:
        HTTPException: 400 for anything else.
    """
    text = value.strip()
    if not _WHOLE_NUMBER.fullmatch(text) or not low <= (number := int(text)) <= high:
        raise bad_request(f"{name}: a whole number from {low} to {high}")
    return number


def bounded_float(value: str, name: str, low: float, high: float) -> float:
    """A finite number from ``low`` to ``high`` (``nan`` and ``inf`` are refused).

    Raises:
        HTTPException: 400 for anything else.
    """
    try:
        number = float(value) if len(value) <= 32 else math.nan
    except ValueError:
        number = math.nan
    if not math.isfinite(number) or not low <= number <= high:
        raise bad_request(f"{name}: a number from {low:g} to {high:g}")
    return number


def parse_window(value: str | None) -> int | None:
    """Seconds of a window name (``15m``, ``1h``, ``6h``, ``24h``, ``7d``, ``30d``)."""
    return WINDOWS.get(value or "")


def window_start(value: str | None) -> datetime:
    """When a window that ends now began.

    Raises:
        HTTPException: 400 for an unknown window name.
    """
    seconds = parse_window(value)
    if seconds is None:
        raise bad_request(f"window: one of {', '.join(WINDOWS)}")
    return datetime.now(UTC) - timedelta(seconds=seconds)


def _parse_time(value: str | None, name: str) -> datetime | None:
    if not value:
        return None
    problem = f"{name}: an ISO 8601 time such as 2026-11-22T06:30:00Z"
    if len(value) > _MAX_TIME_CHARS:
        raise bad_request(problem)
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        # Offsets near the ends of the calendar overflow on the way to UTC.
        return parsed.astimezone(UTC) if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    except (ValueError, OverflowError) as err:
        raise bad_request(problem) from err


def filter_from_query(request: Request) -> tuple[TraceFilter, dict[str, str]]:
    """The search filter a URL's query string describes, and the cleaned-up query.

    Raises:
        HTTPException: 400 naming the first parameter out of its bounds.
    """
    params = request.query_params
    query = {key: params[key].strip() for key in params if params[key].strip()}
    criteria = TraceFilter(
        namespace=optional_text(query.get("namespace"), "namespace", MAX_NAMESPACE_BYTES),
        workflow_type=optional_text(query.get("workflow_type"), "workflow_type", MAX_ID_BYTES),
        workflow_id=optional_text(query.get("workflow_id"), "workflow_id", MAX_ID_BYTES),
        status=query.get("status"),
        since=_parse_time(query.get("since"), "since"),
        until=_parse_time(query.get("until"), "until"),
    )
    if criteria.status and criteria.status not in STATUSES:
        raise bad_request(f"status: one of {', '.join(STATUSES)}")
    if query.get("kind"):
        if query["kind"] not in ROOT_KINDS:
            raise bad_request(f"kind: one of {', '.join(ROOT_KINDS)}")
        criteria.kind = query["kind"]
    if query.get("window"):
        criteria.since = window_start(query["window"])
    if "min_duration" in query:
        criteria.min_duration = bounded_float(
            query["min_duration"], "min_duration", 0, MAX_MIN_DURATION_S
        )
    criteria.page = bounded_int(query.get("page", "1"), "page", 1, MAX_PAGE)
    criteria.page_size = bounded_int(query.get("page_size", "25"), "page_size", 1, MAX_PAGE_SIZE)
    return criteria, query
