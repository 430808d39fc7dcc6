"""Pieces every bench uses: a bounded-concurrency pool, and leaving once figures are out."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import Awaitable, Callable, Iterable


async def run_pool(
    items: Iterable[int], concurrency: int, work: Callable[[int], Awaitable[None]]
) -> float:
    """Run `work` over items with `concurrency` in flight; wall seconds."""
    source = iter(items)

    async def lane() -> None:
        for item in source:
            await work(item)

    started = time.perf_counter()
    await asyncio.gather(*(lane() for _ in range(concurrency)))
    return time.perf_counter() - started


def run_then_exit(main: Callable[[], None]) -> None:
    """Run a bench's main and skip the interpreter's teardown: the SDK's Rust threads can
    outlive the event loop and abort it (temporalio/sdk-python#300) after the figures are out."""
    main()
    sys.stdout.flush()
    os._exit(0)
