"""Bench: new deals parked by 1 and by 2 worker processes (issue 16 item 4), in one run.

For each worker count of `--workers` (default `1,2`): a fresh Temporal dev server, the Bitrix24
emulator in its own process (bucket and operating limit off) and that many worker processes
(`python -m salesflow.worker`, the real activities); `--deals` deals are started at once the
way the relay starts them, and each runs its NEW stage (read the deal, notify, arm the
take-into-work timer). A deal counts as parked once its `notify_users` activity has run, read
from the workers' own Prometheus metrics (`observability.worker_metrics_bind`). Prints per
count the parked rate, the workers' CPU per workflow task (their /proc CPU over the workflow
tasks they ran, from the same metrics), and the ratio of the parked rates against the first
count (goal ≥ 1.7 for 2 against 1). Figures only, no verdict.

    python -m bench.scale_out [--deals 500] [--workers 1,2] [--timeout 300]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx

from bench.common import clean_environ, run_then_exit, served_process, start_dev_server
from bench.open_deals import PARKED_BY, emulator_process, seed_deals, start_deals
from bench.relay import cpu_seconds
from emulators.asgi_server import free_port

QUEUE = "bench-open-deals"  # start_deals starts them on this queue
_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+([0-9.eE+-]+)$")


@dataclass
class Workers:
    metrics: list[str]
    pids: list[int]


@contextlib.asynccontextmanager
async def worker_processes(
    count: int, temporal: str, webhook: str, workdir: Path
) -> AsyncIterator[Workers]:
    env = clean_environ()
    env.update(
        TEMPORAL_ADDRESS=temporal,
        TEMPORAL_NAMESPACE="default",
        SALESFLOW_TEMPORAL__TASK_QUEUE=QUEUE,
        BITRIX24_WEBHOOK_URL=webhook,
        SALESFLOW_BITRIX24__RATE_PER_SECOND="1000000",
        SALESFLOW_BITRIX24__BURST="1000000",
        DATABASE_URL=f"sqlite+aiosqlite:///{workdir / 'salesflow.db'}",
    )
    found = Workers([], [])
    async with contextlib.AsyncExitStack() as stack:
        for n in range(count):
            port = free_port()
            url = f"http://127.0.0.1:{port}/metrics"
            process = await stack.enter_async_context(
                served_process(
                    f"worker {n}",
                    [sys.executable, "-m", "salesflow.worker"],
                    url,
                    workdir / f"worker-{n}.log",
                    env={
                        **env,
                        "SALESFLOW_OBSERVABILITY__WORKER_METRICS_BIND": f"127.0.0.1:{port}",
                    },
                    cwd=Path(__file__).resolve().parents[1],
                )
            )
            found.metrics.append(url)
            found.pids.append(process.pid)
        yield found


def counted(text: str, name_part: str, label: str | None = None) -> float:
    """The sum of the `_count` samples whose name contains `name_part` (and `label`)."""
    total = 0.0
    for line in text.splitlines():
        found = _SAMPLE.match(line.strip())
        if not found or name_part not in found.group(1) or not found.group(1).endswith("_count"):
            continue
        if label is not None and label not in (found.group(2) or ""):
            continue
        total += float(found.group(3))
    return total


def buckets(text: str, name_part: str) -> dict[float, float]:
    """A histogram's cumulative bucket counts by bound in seconds (its unit: milliseconds — the
    SDK's Prometheus default, `durations_as_seconds` off — unless its name says `seconds`)."""
    found_buckets: dict[float, float] = {}
    for line in text.splitlines():
        found = _SAMPLE.match(line.strip())
        if not found or name_part not in found.group(1) or not found.group(1).endswith("_bucket"):
            continue
        le = re.search(r'le="([^"]+)"', found.group(2) or "")
        if le is None or le.group(1) == "+Inf":
            continue
        scale = 1.0 if "seconds" in found.group(1) else 1000.0
        bound = float(le.group(1)) / scale
        found_buckets[bound] = found_buckets.get(bound, 0.0) + float(found.group(3))
    return found_buckets


def over(histogram: dict[float, float], total: float, seconds: float) -> str:
    """How many samples took longer than the bucket bounds around `seconds`: the counts over
    the largest bound ≤ it and over the smallest ≥ it (the histogram has no finer bounds)."""
    below = [b for b in histogram if b <= seconds]
    above = [b for b in histogram if b >= seconds]
    bounds = sorted(({max(below)} if below else set()) | ({min(above)} if above else set()))
    return ", ".join(f"{total - histogram[b]:.0f} over {b:g} s" for b in bounds) or "n/a"


async def scrape(
    http: httpx.AsyncClient, workers: Workers
) -> tuple[float, float, dict[float, float]]:
    """(notify_users activities run, workflow tasks run, their execution-latency histogram)
    over all workers."""
    parked = tasks = 0.0
    histogram: dict[float, float] = {}
    for url in workers.metrics:
        text = (await http.get(url, timeout=30)).text
        parked += counted(text, "activity_execution_latency", f'activity_type="{PARKED_BY}"')
        tasks += counted(text, "workflow_task_execution_latency")
        for bound, n in buckets(text, "workflow_task_execution_latency").items():
            histogram[bound] = histogram.get(bound, 0.0) + n
    return parked, tasks, histogram


async def one_count(args: argparse.Namespace, count: int) -> tuple[float, float]:
    """Parked deals/s and worker CPU ms per workflow task with `count` worker processes."""
    env = await start_dev_server()
    try:
        with tempfile.TemporaryDirectory(prefix="bench-scale-out-") as tmp:
            workdir = Path(tmp)
            async with (
                emulator_process(workdir) as webhook,
                httpx.AsyncClient() as http,
            ):
                target = env.client.service_client.config.target_host
                async with worker_processes(count, target, webhook, workdir) as workers:
                    ids = await seed_deals(webhook, args.deals)
                    cpu_before = sum(cpu_seconds(pid) for pid in workers.pids)
                    started = time.perf_counter()
                    await start_deals(env.client, ids, 50)
                    parked = tasks = 0.0
                    histogram: dict[float, float] = {}
                    while time.perf_counter() - started < args.timeout:
                        parked, tasks, histogram = await scrape(http, workers)
                        if parked >= len(ids):
                            break
                        await asyncio.sleep(0.5)
                    seconds = time.perf_counter() - started
                    cpu = sum(cpu_seconds(pid) for pid in workers.pids) - cpu_before
    finally:
        await env.shutdown()
    rate = parked / seconds
    per_task = cpu / tasks * 1000 if tasks else float("nan")
    print(
        f"{count} worker process{'es' if count > 1 else ''}: parked {parked:.0f}/{len(ids)} in"
        f" {seconds:.1f} s = {rate:.1f} deals/s; {tasks:.0f} workflow tasks,"
        f" worker CPU {cpu:.1f} s = {per_task:.1f} ms per workflow task,"
        f" workflow tasks {over(histogram, tasks, 5.0)}"
        f" (load average {os.getloadavg()[0]:.1f})"
    )
    return rate, per_task


async def run(args: argparse.Namespace) -> None:
    counts = [int(c) for c in args.workers.split(",") if c.strip()]
    print(
        f"scale-out bench: {args.deals} deals started at once, worker processes {counts};"
        f" {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}"
    )
    rates = [(count, (await one_count(args, count))[0]) for count in counts]
    base_count, base = rates[0]
    for count, rate in rates[1:]:
        print(
            f"parked rate with {count} against {base_count}: {rate / base:.2f}"
            " (goal ≥ 1.7 for 2 against 1)"
        )


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--deals", type=int, default=500)
    parser.add_argument("--workers", default="1,2", help="worker counts, comma-separated")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds to wait per count")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    asyncio.run(run(parse(argv)))


if __name__ == "__main__":
    run_then_exit(main)
