"""The one loop every background job runs in: step, wait, repeat until stopped.

The linker, the lease keeper, retention and the exporter each hand their step to
:func:`run_periodically`, which owns stopping, waiting, error logging and lease checks.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Collection
from typing import Protocol

__all__ = ["LeaseHolder", "run_periodically", "sleep_unless_stopped"]

logger = logging.getLogger(__name__)


class LeaseHolder(Protocol):
    """Whatever knows which leased pieces of work this collector holds right now."""

    @property
    def held(self) -> Collection[str]:
        """Names of the leases held."""
        ...


async def sleep_unless_stopped(stop: asyncio.Event, seconds: float) -> None:
    """Wait ``seconds``, or less if ``stop`` is set meanwhile."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=max(seconds, 0.0))


async def run_periodically(
    step: Callable[[], Awaitable[float | None]],
    stop: asyncio.Event,
    *,
    name: str,
    interval: float,
    lease: str | None = None,
    leases: LeaseHolder | None = None,
    on_error: Callable[[Exception], float] | None = None,
) -> None:
    """Run ``step`` until ``stop`` is set, waiting between steps.

    Args:
        step: One round of work. It returns how long to wait before the next round
            (``None``: ``interval``; ``0``: go again at once, there is more to do).
        stop: Set to end the loop; every wait ends early when it is set.
        name: What the job is, for its log lines.
        interval: Seconds between rounds, and before a retry after an error.
        lease: With ``leases``, run only while this lease is held (several collectors on
            one database share the work); check again every ``interval``.
        leases: The collector's lease keeper.
        on_error: Called with a round's exception; returns the seconds to wait before the
            next round (a backoff). Without it the error is logged with its traceback and
            the next round comes after ``interval``: a bug or a database hiccup never ends
            the job.
    """
    while not stop.is_set():
        if lease is not None and leases is not None and lease not in leases.held:
            await sleep_unless_stopped(stop, interval)
            continue
        try:
            wait = await step()
        except Exception as err:
            if on_error is not None:
                wait = on_error(err)
            else:
                logger.exception("%s failed; retrying in %.1fs", name, interval)
                wait = interval
        await sleep_unless_stopped(stop, interval if wait is None else wait)
