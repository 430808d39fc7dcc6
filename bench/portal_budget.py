"""Bench: one Bitrix24 budget for the relay and several worker processes (issue 16 item 2).

Everything real and in its own process: the Temporal dev server, the Bitrix24 emulator with
its leaky bucket on (`--rate` requests/s, `--burst`; the operating limit off), the relay
(`salesflow relay`) and `--workers` worker processes (`python -m salesflow.worker`), all with
`bitrix24.shared_bucket` on one SQLite database, so every REST request of every process is
taken from the database's bucket of the portal (`store.portal_bucket`).

`--deals` deals are added to the portal, then all their ONCRMDEALADD events are POSTed to the
relay at once: the relay reads each deal (its pipeline) and starts its workflow; the workers
run NEW (read, notify, the take-into-work deadline); the bench takes every lead into work
(`accept_lead`, as a manager would) and waits until IN_WORK's tasks are open. Prints the
QUERY_LIMIT_EXCEEDED answers of the portal during the run (goal 0), the REST requests it took
and the run time against the bucket's minimum for them, (requests − burst) / rate (goal
≤ 1.2×). `--no-shared` runs the same with each process throttling alone, for comparison.

    python -m bench.portal_budget [--deals 500] [--workers 3] [--rate 10] [--burst 50]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
from sqlalchemy import make_url, text
from temporalio.client import (
    Client,
    WorkflowUpdateFailedError,
    WorkflowUpdateRPCTimeoutOrCancelledError,
)
from temporalio.service import RPCError

from bench.common import (
    BIN,
    clean_environ,
    run_pool,
    run_then_exit,
    served_process,
    start_dev_server,
)
from bench.open_deals import seed_deals
from emulators.asgi_server import free_port
from salesflow.integrations.bitrix24 import php_form
from salesflow.store.db import init_db, make_engine
from salesflow.workflows.models import AcceptLead
from salesflow.workflows.names import deal_workflow_id

SECRET = "benchsecret"
TOKEN = "bench-app-token"
QUEUE = "bench-portal-budget"
MANAGER = 3

EMULATOR = """
import sys, uvicorn
from emulators.bitrix24.app import create_app
app = create_app(secret=sys.argv[2], application_token=sys.argv[3],
                 rate_per_second=float(sys.argv[4]), burst=int(sys.argv[5]), operating_limit=None)
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
"""


@contextlib.asynccontextmanager
async def emulator_process(workdir: Path, rate: float, burst: int) -> AsyncIterator[str]:
    """The Bitrix24 emulator with its bucket on; yields its base URL."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    async with served_process(
        "emulator",
        [sys.executable, "-c", EMULATOR, str(port), SECRET, TOKEN, str(rate), str(burst)],
        f"{url}/_emulator/state",
        workdir / "bitrix24.log",
        cwd=Path(__file__).resolve().parents[1],
    ):
        yield url


def process_env(args: argparse.Namespace, temporal: str, webhook: str, db: str) -> dict[str, str]:
    env = clean_environ()
    env.update(
        TEMPORAL_ADDRESS=temporal,
        TEMPORAL_NAMESPACE="default",
        SALESFLOW_TEMPORAL__TASK_QUEUE=QUEUE,
        BITRIX24_WEBHOOK_URL=webhook,
        BITRIX24_APPLICATION_TOKEN=TOKEN,
        SALESFLOW_BITRIX24__RATE_PER_SECOND=str(args.rate),
        SALESFLOW_BITRIX24__BURST=str(args.burst),
        SALESFLOW_BITRIX24__SHARED_BUCKET="false" if args.no_shared else "true",
        SALESFLOW_RELAY__OFFLINE_INTERVAL_SECONDS="0",
        SALESFLOW_RELAY__SCAN_INTERVAL_SECONDS="0",
        DATABASE_URL=db,
    )
    return env


@contextlib.asynccontextmanager
async def processes(
    args: argparse.Namespace, env: dict[str, str], workdir: Path
) -> AsyncIterator[str]:
    """The relay and the workers; yields the relay's URL."""
    async with contextlib.AsyncExitStack() as stack:
        port = free_port()
        relay = f"http://127.0.0.1:{port}"
        await stack.enter_async_context(
            served_process(
                "relay",
                [str(BIN / "salesflow"), "relay", "--host", "127.0.0.1", "--port", str(port)],
                f"{relay}/healthz",
                workdir / "relay.log",
                env=env,
                cwd=workdir,
            )
        )
        for n in range(args.workers):
            metrics = free_port()
            await stack.enter_async_context(
                served_process(
                    f"worker {n}",
                    [sys.executable, "-m", "salesflow.worker"],
                    f"http://127.0.0.1:{metrics}/metrics",
                    workdir / f"worker-{n}.log",
                    env={
                        **env,
                        "SALESFLOW_OBSERVABILITY__WORKER_METRICS_BIND": f"127.0.0.1:{metrics}",
                    },
                    cwd=Path(__file__).resolve().parents[1],
                )
            )
        yield relay


@contextlib.asynccontextmanager
async def database(server_url: str | None, workdir: Path) -> AsyncIterator[str]:
    """The processes' database, migrated: SQLite in `workdir`, or a database of its own made
    on the PostgreSQL server of `server_url` and dropped afterwards."""
    if server_url is None:
        url = f"sqlite+aiosqlite:///{workdir / 'salesflow.db'}"
    else:
        name = f"bench_portal_{uuid.uuid4().hex[:10]}"
        admin = make_engine(server_url, isolation_level="AUTOCOMMIT")
        async with admin.connect() as conn:
            await conn.execute(text(f'CREATE DATABASE "{name}"'))
        url = str(make_url(server_url).set(database=name).render_as_string(hide_password=False))
    engine = make_engine(url)
    try:
        await init_db(engine)  # once, before the processes start
        await engine.dispose()
        yield url
    finally:
        await engine.dispose()
        if server_url is not None:
            async with admin.connect() as conn:
                await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            await admin.dispose()


async def portal_state(http: httpx.AsyncClient, url: str) -> tuple[int, int]:
    """(requests, QUERY_LIMIT_EXCEEDED answers) so far."""
    state = (await http.get(f"{url}/_emulator/state", timeout=60)).json()
    return int(state["requests"]), sum(int(n) for n in state["rejected"].values())


def event_body(deal_id: int, member_id: str) -> str:
    return php_form.encode(
        {
            "event": "ONCRMDEALADD",
            "event_handler_id": 1,
            "data": {"FIELDS": {"ID": deal_id}},
            "ts": int(time.time()),
            "auth": {
                "domain": "bench.bitrix24.ru",
                "member_id": member_id,
                "application_token": TOKEN,
            },
        }
    )


async def take_into_work(client: Client, deal_id: int, timeout: float) -> bool:
    """`accept_lead` once the deal's workflow takes it (it answers after the move to IN_WORK)."""
    handle = client.get_workflow_handle(deal_workflow_id(deal_id))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            await handle.execute_update("accept_lead", AcceptLead(manager_id=MANAGER))
            return True
        except WorkflowUpdateFailedError as exc:
            if "already been taken" in str(exc.cause):
                return True  # an earlier attempt's answer was lost, the lead is taken
        except (RPCError, WorkflowUpdateRPCTimeoutOrCancelledError):
            pass  # not started yet, or the answer took too long: ask again
        await asyncio.sleep(1.0)
    return False


async def quiet_since(
    http: httpx.AsyncClient, url: str, quiet: float, timeout: float
) -> tuple[float, int]:
    """Wait until the portal has had no request for `quiet` s; (monotonic time of its last
    request as seen, requests so far). IN_WORK's tasks are what the workers do last."""
    requests, _ = await portal_state(http, url)
    changed = time.monotonic()
    deadline = changed + timeout
    while time.monotonic() - changed < quiet and time.monotonic() < deadline:
        await asyncio.sleep(0.5)
        now, _ = await portal_state(http, url)
        if now != requests:
            requests, changed = now, time.monotonic()
    return changed, requests


async def run(args: argparse.Namespace) -> None:
    shared = "one shared bucket (database)" if not args.no_shared else "each process alone"
    print(
        f"portal budget bench: {args.deals} deals through NEW and IN_WORK, the relay +"
        f" {args.workers} worker processes, {shared}; portal bucket {args.rate:g}/s burst"
        f" {args.burst}; {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}"
    )
    env = await start_dev_server()
    try:
        with tempfile.TemporaryDirectory(prefix="bench-portal-budget-") as tmp:
            workdir = Path(tmp)
            async with (
                database(args.database_url, workdir) as db,
                emulator_process(workdir, args.rate, args.burst) as b24,
                httpx.AsyncClient() as http,
            ):
                webhook = f"{b24}/rest/1/{SECRET}/"
                target = env.client.service_client.config.target_host
                async with processes(
                    args, process_env(args, target, webhook, db), workdir
                ) as relay:
                    await measure(args, env.client, http, b24, webhook, relay)
    finally:
        await env.shutdown()


async def measure(
    args: argparse.Namespace,
    client: Client,
    http: httpx.AsyncClient,
    b24: str,
    webhook: str,
    relay: str,
) -> None:
    ids = await seed_deals(webhook, args.deals)
    member_id = (await http.get(f"{b24}/_emulator/state", timeout=60)).json().get("member_id", "")
    await asyncio.sleep(args.burst / args.rate)  # the seeding's requests drain from the bucket
    requests_before, rejected_before = await portal_state(http, b24)
    started = time.monotonic()

    refused: list[str] = []

    async def post(index: int) -> None:
        try:
            answer = await http.post(
                f"{relay}/bitrix24/events",
                content=event_body(ids[index], str(member_id)),
                headers={"Content-Type": "application/x-www-form-urlencoded"},
                timeout=60,
            )
        except httpx.HTTPError as exc:
            refused.append(type(exc).__name__)
            return
        if answer.status_code != 200:
            refused.append(str(answer.status_code))

    await run_pool(range(len(ids)), 16, post)
    posted = time.monotonic() - started
    done: list[bool] = []

    async def one(index: int) -> None:
        done.append(await take_into_work(client, ids[index], args.timeout))

    await run_pool(range(len(ids)), len(ids), one)
    last, requests_after = await quiet_since(http, b24, 5.0, args.timeout)
    seconds = last - started
    _, rejected_after = await portal_state(http, b24)
    requests = requests_after - requests_before
    rejected = rejected_after - rejected_before
    served = requests - rejected  # a refused request costs the portal's bucket nothing
    minimum = max(0.0, served - args.burst) / args.rate

    print(
        f"\nevents POSTed to the relay in {posted:.1f} s ({len(refused)} not accepted)"
        f"\ntaken into work: {sum(done)}/{len(ids)} deals; the portal's last request (IN_WORK's"
        f" tasks done) {seconds:.1f} s after the first POST"
    )
    print(
        f"portal: {requests} REST requests ({requests / max(len(ids), 1):.1f} per deal),"
        f" QUERY_LIMIT_EXCEEDED answered: {rejected} (goal 0)"
    )
    ratio = seconds / minimum if minimum else float("nan")
    print(
        f"bucket minimum for the {served} served: ({served} − {args.burst}) / {args.rate:g}"
        f" = {minimum:.1f} s; run time / minimum: {ratio:.2f} (goal ≤ 1.2)"
    )
    print(f"load average after the run: {os.getloadavg()[0]:.1f}")


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--deals", type=int, default=500)
    parser.add_argument("--workers", type=int, default=3, help="worker processes (default 3)")
    parser.add_argument("--rate", type=float, default=10.0, help="the portal's requests/s")
    parser.add_argument("--burst", type=int, default=50, help="the portal's bucket size")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per deal at most")
    parser.add_argument(
        "--database-url",
        default=None,
        help="a PostgreSQL server URL: the bench makes a database there (default: SQLite)",
    )
    parser.add_argument(
        "--no-shared", action="store_true", help="each process throttles alone (comparison)"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    asyncio.run(run(parse(argv)))


if __name__ == "__main__":
    run_then_exit(main)
