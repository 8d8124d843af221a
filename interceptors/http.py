"""The HTTP hop of an activity wrapper.

Caller side (inside an activity)::

    async with httpx.AsyncClient(event_hooks=interceptors.http.async_httpx_hooks()) as http:
        await http.post(url, json=body)

API side (FastAPI / Starlette)::

    app.add_middleware(interceptors.http.CallerContextMiddleware)
"""

from ._claim import CLAIM_HEADER, SIGNATURE_HEADER
from ._http import (
    CallerContextMiddleware,
    async_httpx_hooks,
    caller_context,
    caller_from_metadata,
    httpx_hooks,
    outgoing_headers,
    outgoing_metadata,
    requests_auth,
)

__all__ = [
    "CLAIM_HEADER",
    "SIGNATURE_HEADER",
    "CallerContextMiddleware",
    "async_httpx_hooks",
    "caller_context",
    "caller_from_metadata",
    "httpx_hooks",
    "outgoing_headers",
    "outgoing_metadata",
    "requests_auth",
]
