"""Query parameters shared by the pages and the JSON API: search filters and windows."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from fastapi import HTTPException, Request

from tracer.domain import Status
from tracer.query import TraceFilter

from ._access import viewer_of

__all__ = ["PAGE_SIZES", "STATUSES", "WINDOWS", "filter_from_query", "parse_window"]

STATUSES = [status.value for status in Status]
WINDOWS = {"15m": 900, "1h": 3600, "6h": 21600, "24h": 86400, "7d": 604800, "30d": 2592000}
PAGE_SIZES = (10, 25, 50, 100)
MAX_PAGE_SIZE = 200


def parse_window(value: str | None) -> int | None:
    """Seconds of a window name (``15m``, ``1h``, ``6h``, ``24h``, ``7d``, ``30d``)."""
    return WINDOWS.get(value or "")


def _parse_time(value: str | None, name: str) -> datetime | None:
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as err:
        raise HTTPException(status_code=400, detail=f"{name}: not an ISO 8601 time") from err
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def filter_from_query(request: Request) -> tuple[TraceFilter, dict[str, str]]:
    """The search filter a URL's query string describes, and the cleaned-up query."""
    params = request.query_params
    query = {key: params[key].strip() for key in params if params[key].strip()}
    criteria = TraceFilter(
        namespace=query.get("namespace"),
        workflow_type=query.get("workflow_type"),
        workflow_id=query.get("workflow_id"),
        status=query.get("status"),
        since=_parse_time(query.get("since"), "since"),
        until=_parse_time(query.get("until"), "until"),
    )
    if criteria.status and criteria.status not in STATUSES:
        raise HTTPException(status_code=400, detail=f"status must be one of {STATUSES}")
    window = query.get("window")
    if window:
        seconds = parse_window(window)
        if seconds is None:
            raise HTTPException(status_code=400, detail=f"window must be one of {list(WINDOWS)}")
        criteria.since = datetime.now(UTC) - timedelta(seconds=seconds)
    try:
        if "min_duration" in query:
            criteria.min_duration = float(query["min_duration"])
        criteria.page = max(1, int(query.get("page", "1")))
        criteria.page_size = int(query.get("page_size", "25"))
    except ValueError as err:
        raise HTTPException(
            status_code=400, detail="page, page_size, min_duration: numbers"
        ) from err
    if not 1 <= criteria.page_size <= MAX_PAGE_SIZE:
        raise HTTPException(status_code=400, detail=f"page_size must be 1 to {MAX_PAGE_SIZE}")
    viewer = viewer_of(request)
    criteria.visible_namespaces = viewer.namespaces
    return criteria, query
