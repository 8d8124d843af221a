"""Keeping tree summaries current in the background, so search never waits on them; and
giving spans stored before their run was linked the namespace of that run."""

from __future__ import annotations

import asyncio
import logging
import time

from tracer.store import Store

from ._loop import run_periodically

__all__ = ["run_summaries"]

logger = logging.getLogger(__name__)

# Runs one round takes at most: a backlog (a first start after an upgrade) goes in slices.
ROUND_RUNS = 5000


async def run_summaries(store: Store, stop: asyncio.Event, *, interval: float = 0.5) -> None:
    """Summarize the trees of newly written runs every ``interval`` seconds, and place
    spans that waited for their run (a bounded batch per round)."""
    backlog = 0
    started = 0.0

    def one_round() -> int:
        done = store.refresh_summaries(max_runs=ROUND_RUNS)
        placed = store.fill_span_namespaces()
        if placed:
            logger.debug("gave %d stored spans the namespace of their run", placed)
        return done

    async def summarize() -> float | None:
        nonlocal backlog, started
        done = await asyncio.to_thread(one_round)
        if done >= ROUND_RUNS:
            if not backlog:
                started = time.monotonic()
            backlog += done
            logger.info("summarizing trees: %d runs so far", backlog)
            return 0.0
        if backlog:
            logger.info(
                "summarized the trees of %d runs in %.1fs",
                backlog + done,
                time.monotonic() - started,
            )
            backlog = 0
        return None

    await run_periodically(summarize, stop, name="tree summaries", interval=interval)
