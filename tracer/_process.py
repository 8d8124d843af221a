"""Process-wide concerns of long-lived commands: signals, and a heap the GC need not scan."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import signal
from collections.abc import Coroutine
from typing import Any

__all__ = ["freeze_startup_heap", "run_until_signalled"]


async def _cancel_on_signals(main: Coroutine[Any, Any, None]) -> None:
    task = asyncio.ensure_future(main)
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        # A signal at any stage cancels the command; its finally blocks stop what it started.
        loop.add_signal_handler(signum, task.cancel)
    await task


def run_until_signalled(main: Coroutine[Any, Any, None]) -> None:
    """Run ``main`` in a new event loop until it returns or the process is signalled."""
    with contextlib.suppress(KeyboardInterrupt, asyncio.CancelledError):
        asyncio.run(_cancel_on_signals(main))


def freeze_startup_heap() -> None:
    """Keep everything allocated so far out of the garbage collector's full passes.

    A long-running service has a large, immortal heap of modules, apps and mappers; every
    full collection walked all of it, a ~90 ms pause that landed on request latency (the
    p95 of a 1,000-node tree went from 26 ms to 120 ms). Frozen objects are never scanned.
    """
    gc.collect()
    gc.freeze()
