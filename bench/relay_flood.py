"""Bench: a genuine event's latency at the relay while one client floods it with hostile bodies.

The relay runs as its production process (`salesflow relay`, its own process and event loop,
default limits, inbox in SQLite), the Bitrix24 emulator answers its reads; Temporal is not
there (the forwarder retries in the background in both phases alike): what is measured is
POST → 200, i.e. the event durably in the inbox.

1. Idle: `--events` genuine ONCRMDEALUPDATE POSTs, one every `--interval` ms, one keep-alive
   connection (as the portal sends them).
2. Flood: the same again while one other process floods the relay on `--connections` raw
   connections, as fast as the relay answers, with the hostile shapes of issue 11 — the
   quadratic `x[]=0&x[]=1…`×4999 (40 KB), `data`+`[a]`×333 000 (1 MB, declared), 20 000
   parameters, deep and long keys, forged tokens with 300 distinct event names, a chunked body
   past the size limit — and holds `--half-open` connections that send half a request head.

Prints p50/p99/max of both phases and the ratio flood p99 / idle p99 (goal ≤ 2), the flood's
requests by status, and the relay's /metrics size before and after. `--refusal-delay 0` shows
what the size, time and parse limits achieve without the relay's delayed refusals. Figures
only, no verdict.

    python -m bench.relay_flood [--events 300] [--interval 10] [--connections 8] [--half-open 50]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import httpx

from bench.common import BIN, clean_environ, percentile, run_then_exit, served_process
from emulators.asgi_server import free_port, serve
from emulators.bitrix24.app import create_app as bitrix24_app
from emulators.bitrix24.deals import create_deal
from emulators.bitrix24.registry import CallContext
from salesflow.integrations.bitrix24 import php_form

SECRET = "benchsecret"
TOKEN = "bench-flood-token"
PATH = "/bitrix24/events"


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f} ms"


# ---- the hostile client (its own process) ---------------------------------------------------


def _request(body: bytes, *, chunked: bool = False, declared: int | None = None) -> bytes:
    head = [
        f"POST {PATH} HTTP/1.1",
        "Host: relay",
        "Content-Type: application/x-www-form-urlencoded",
    ]
    if chunked:
        head.append("Transfer-Encoding: chunked")
        size = 16_384
        pieces = [
            b"%x\r\n%s\r\n" % (len(body[i : i + size]), body[i : i + size])
            for i in range(0, len(body), size)
        ]
        return ("\r\n".join(head) + "\r\n\r\n").encode() + b"".join(pieces) + b"0\r\n\r\n"
    head.append(f"Content-Length: {declared if declared is not None else len(body)}")
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


def hostile_requests() -> dict[str, bytes]:
    forged = [
        php_form.encode(
            {
                "event": f"ONFORGED{n}",
                "data": {"FIELDS": {"ID": n}},
                "ts": 1,
                "auth": {"application_token": f"forged-{n}"},
            }
        ).encode()
        for n in range(300)
    ]
    return {
        "appends-x4999": _request(b"&".join(b"x[]=%d" % i for i in range(4999))),
        "deep-key-1MB": _request(b"data" + b"[a]" * 333_000 + b"=1"),
        "params-20000": _request(b"&".join(b"k%d=v" % i for i in range(20_000))),
        "deep-keys": _request(b"&".join(b"a" + b"[b]" * 60 + b"=%d" % i for i in range(150))),
        "long-keys": _request(b"&".join(b"k" * 3000 + b"%d=1" % i for i in range(20))),
        "chunked-over-limit": _request(b"a=" + b"x" * 200_000, chunked=True),
        **{f"forged-{n}": _request(body) for n, body in enumerate(forged)},
    }


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bool]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    length, close = 0, False
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.lower() == "content-length":
            length = int(value)
        if name.lower() == "connection" and "close" in value.lower():
            close = True
    await reader.readexactly(length)
    return status, close


async def flood(
    port: int, connections: int, half_open: int, seconds: float, statuses: Counter[str]
) -> None:
    requests = list(hostile_requests().items())
    stop = time.monotonic() + seconds

    async def lane(offset: int) -> None:
        turn = offset
        while time.monotonic() < stop:
            try:
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                statuses["connect-error"] += 1
                await asyncio.sleep(0.01)
                continue
            try:
                while time.monotonic() < stop:
                    # the quadratic and forged shapes most of the time, the big ones now and then
                    _, data = requests[turn % len(requests)]
                    turn += 7
                    writer.write(data)
                    status, close = await _read_response(reader)
                    statuses[str(status)] += 1
                    if close:
                        break
            except (OSError, asyncio.IncompleteReadError, ValueError, IndexError):
                statuses["reset"] += 1
            finally:
                writer.close()
                with contextlib.suppress(OSError):
                    await writer.wait_closed()

    async def hold_half_open() -> None:
        held: list[asyncio.StreamWriter] = []
        while time.monotonic() < stop:
            while len(held) < half_open:
                try:
                    _, writer = await asyncio.open_connection("127.0.0.1", port)
                except OSError:
                    break
                writer.write(b"POST /bitrix24/events HTTP/1.1\r\nHost: relay\r\n")
                held.append(writer)
            await asyncio.sleep(0.5)
            held = [w for w in held if not w.is_closing() and not w.transport.is_closing()]
            statuses["half-open-held"] = max(statuses["half-open-held"], len(held))
        for writer in held:
            writer.close()

    await asyncio.gather(hold_half_open(), *(lane(n) for n in range(connections)))


# ---- the genuine portal ---------------------------------------------------------------------


def genuine_body(deal_id: int) -> bytes:
    return php_form.encode(
        {
            "event": "ONCRMDEALUPDATE",
            "event_handler_id": 1,
            "data": {"FIELDS": {"ID": deal_id}},
            "ts": int(time.time()),
            "auth": {
                "domain": "bench.bitrix24.ru",
                "client_endpoint": "https://bench.bitrix24.ru/rest/",
                "server_endpoint": "https://oauth.bitrix.info/rest/",
                "member_id": "bench",
                "application_token": TOKEN,
            },
        }
    ).encode()


async def genuine(url: str, deal_ids: list[int], interval: float) -> tuple[list[float], int]:
    latencies: list[float] = []
    errors = 0
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        for deal_id in deal_ids:
            body = genuine_body(deal_id)
            started = time.perf_counter()
            try:
                answer = await http.post(PATH, content=body, headers=headers)
                ok = answer.status_code == 200
            except httpx.HTTPError:
                ok = False
            if ok:
                latencies.append(time.perf_counter() - started)
            else:
                errors += 1
            await asyncio.sleep(interval)
    return latencies, errors


# ---- the run --------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def relay_process(
    webhook_url: str, workdir: Path, refusal_delay: float | None
) -> AsyncIterator[str]:
    port = free_port()
    env = clean_environ()
    env.update(
        TEMPORAL_ADDRESS="127.0.0.1:1",  # not there: recording is what is measured
        BITRIX24_WEBHOOK_URL=webhook_url,
        BITRIX24_APPLICATION_TOKEN=TOKEN,
        DATABASE_URL=f"sqlite+aiosqlite:///{workdir}/relay.db",
        SALESFLOW_RELAY__OFFLINE_INTERVAL_SECONDS="0",
        SALESFLOW_RELAY__SCAN_INTERVAL_SECONDS="0",
        SALESFLOW_OBSERVABILITY__LOG_LEVEL="ERROR",
    )
    if refusal_delay is not None:
        env["SALESFLOW_RELAY__REFUSAL_DELAY_SECONDS"] = str(refusal_delay)
    url = f"http://127.0.0.1:{port}"
    async with served_process(
        "relay",
        [str(BIN / "salesflow"), "relay", "--host", "127.0.0.1", "--port", str(port)],
        f"{url}/healthz",
        workdir / "relay.log",
        env=env,
        cwd=workdir,
    ):
        yield url


def summary(name: str, latencies: list[float], errors: int) -> str:
    return (
        f"{name:<6} {len(latencies):>5} ok {errors:>3} failed   p50 {ms(percentile(latencies, 50))}"
        f"   p99 {ms(percentile(latencies, 99))}   max {ms(max(latencies, default=math.nan))}"
    )


async def run(args: argparse.Namespace) -> None:
    app = bitrix24_app(secret=SECRET, application_token=TOKEN, rate_per_second=None)
    portal = app.state.portal
    ctx = CallContext(portal, 1)
    fields = {"TITLE": "Заявка", "CATEGORY_ID": 1, "STAGE_ID": "C1:NEW"}
    deals = [create_deal(ctx, dict(fields)) for _ in range(2 * args.events)]
    portal.event_log.clear()
    with tempfile.TemporaryDirectory(prefix="bench-flood-") as tmp:
        workdir = Path(tmp)
        async with (
            serve(app) as emulator,
            relay_process(f"{emulator.url}/rest/1/{SECRET}/", workdir, args.refusal_delay) as url,
        ):
            await genuine(url, deals[:5], 0)  # warm-up
            async with httpx.AsyncClient() as http:
                metrics_before = len((await http.get(f"{url}/metrics")).text)
            idle, idle_errors = await genuine(url, deals[: args.events], args.interval / 1000)
            seconds = args.events * (args.interval / 1000 + 0.01) + 5
            port = int(url.rsplit(":", 1)[1])
            flooder = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "bench.relay_flood",
                    "--flood-port",
                    str(port),
                    "--connections",
                    str(args.connections),
                    "--half-open",
                    str(args.half_open),
                    "--seconds",
                    str(seconds),
                ],
                stdout=subprocess.PIPE,
            )
            await asyncio.sleep(1.0)  # the flood is on
            flooded, flood_errors = await genuine(url, deals[args.events :], args.interval / 1000)
            flooder.terminate()
            out, _ = flooder.communicate(timeout=30)
            statuses = json.loads(out.decode().strip().splitlines()[-1]) if out.strip() else {}
            async with httpx.AsyncClient() as http:
                metrics_after = len((await http.get(f"{url}/metrics")).text)
                health = (await http.get(f"{url}/healthz")).json()
    delay = "default" if args.refusal_delay is None else f"{args.refusal_delay:g} s"
    print(
        f"relay flood: {args.events} genuine events per phase, one every {args.interval:g} ms;"
        f" {args.connections} flooding connections, {args.half_open} half-open;"
        f" relay.refusal_delay_seconds {delay}"
    )
    print(summary("idle", idle, idle_errors))
    print(summary("flood", flooded, flood_errors))
    ratio = percentile(flooded, 99) / percentile(idle, 99) if idle and flooded else math.nan
    print(f"ratio flood p99 / idle p99: {ratio:.2f} (goal <= 2)")
    hostile = sum(v for k, v in statuses.items() if k.isdigit())
    print(f"flood: {hostile} hostile requests answered, by status {statuses}")
    print(f"/metrics: {metrics_before} bytes before, {metrics_after} after")
    print(f"/healthz after: {health.get('status')} (database {health.get('database')})")


def flood_main(args: argparse.Namespace) -> None:
    """The hostile client's process: its statuses as one JSON line on stdout at the end."""
    statuses: Counter[str] = Counter()
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(
            flood(args.flood_port, args.connections, args.half_open, args.seconds, statuses)
        )
    print(json.dumps(dict(statuses)), flush=True)


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=300, help="genuine events per phase")
    parser.add_argument("--interval", type=float, default=10, help="ms between genuine events")
    parser.add_argument("--connections", type=int, default=8, help="flooding connections")
    parser.add_argument("--half-open", type=int, default=50, help="half-open connections held")
    parser.add_argument(
        "--refusal-delay",
        type=float,
        help="relay.refusal_delay_seconds (default: the relay's own, 0.25)",
    )
    parser.add_argument("--flood-port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--seconds", type=float, default=30, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    if args.flood_port:
        flood_main(args)
        return
    asyncio.run(run(args))


if __name__ == "__main__":
    run_then_exit(main)
