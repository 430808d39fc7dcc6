"""`salesflow app install`: the local application's widget and events bound on the portal.

With the local application's OAuth token (an administrator's, scopes crm, task, user,
placement): the deal card's tab (`placement.bind CRM_DEAL_DETAIL_TAB`, handler
`<relay.public_url>/bitrix24/deal-card`, a Russian title) and the events the relay needs —
online (`event.bind`, handler `<relay.public_url>/bitrix24/events`) and offline (the relay's
`relay.offline_events`, drained by `relay/offline.py`, which binds them through
`bind_offline_events` here: one code path). Idempotent: `placement.get` and `event.get` are
read first and only what is missing is bound; a registration of ours at another handler of
the same path (the public URL changed) is replaced. `salesflow doctor` runs `plan` to check
and `apply` with `--fix`; `salesflow dev` installs into the emulator with `install`.

Facts (b24restdocs): `api-reference/widgets/placement-bind.md`, `placement-get.md`,
`placement-unbind.md` (admin, scope placement; "Handler already binded" on a repeat);
`api-reference/events/event-bind.md`, `event-get.md` (application context only: a webhook
gets WRONG_AUTH_TYPE; offline needs an administrator; "Handler already exists!").
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import urlsplit

from rich.console import Console

from salesflow.config.settings import Settings
from salesflow.deal_card.texts import Texts
from salesflow.integrations.bitrix24.client import Bitrix24Client
from salesflow.integrations.bitrix24.errors import Bitrix24Error
from salesflow.integrations.bitrix24.oauth import (
    RefreshingCaller,
    TokenBearer,
    TokenRefreshError,
)
from salesflow.relay.app_token import application_tokens
from salesflow.store.db import DatabaseUnavailable, database_engine, init_db

log = logging.getLogger("salesflow.app_install")

DEAL_TAB = "CRM_DEAL_DETAIL_TAB"
TAB_PATH = "/bitrix24/deal-card"  # salesflow.deal_card.app.TAB_PATH
EVENTS_PATH = "/bitrix24/events"  # salesflow.relay.app.EVENTS_PATH
# The events the relay turns into workflow signals (workflows/names.py) plus the pipeline move.
ONLINE_EVENTS = (
    "ONCRMDEALADD",
    "ONCRMDEALUPDATE",
    "ONCRMDEALMOVETOCATEGORY",
    "ONTASKADD",
    "ONTASKUPDATE",
)
REQUIRED_SCOPES = ("crm", "task", "user", "placement")
_HANDLER_EXISTS = "ERROR_HANDLER_ALREADY_EXIST"
_LOOPBACK_NAMES = frozenset({"localhost"})


class Caller(Protocol):
    async def call(self, method: str, params: dict[str, Any] | None = None) -> Any: ...


class InstallError(Exception):
    """The installation cannot go on; the message says what is wrong and what to do."""


# ------------------------------------------------------------------ what should be bound
@dataclass(frozen=True)
class Target:
    tab_handler: str
    tab_title: str
    events_handler: str  # "" : no online events
    online_events: tuple[str, ...]
    offline_events: tuple[str, ...]


def _is_loopback(host: str) -> bool:
    if host.lower() in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_public_url(url: str) -> str:
    """The relay's public base URL, checked: https (http only on loopback), no path beyond
    a prefix, no query. Returns it without a trailing slash."""
    url = url.strip()
    if not url:
        raise InstallError(
            "relay.public_url is empty: set it to the relay's address as the portal and the"
            " users' browsers reach it, e.g. https://salesflow.example.ru (or --public-url)"
        )
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InstallError(f"relay.public_url {url!r} is not an http(s) URL with a host")
    if parts.query or parts.fragment:
        raise InstallError(f"relay.public_url {url!r} must not have a query or a fragment")
    path = parts.path.rstrip("/")
    if path.endswith((TAB_PATH, EVENTS_PATH)):
        raise InstallError(
            f"relay.public_url {url!r} is the relay's base, without {TAB_PATH} or {EVENTS_PATH}"
        )
    if parts.scheme != "https" and not _is_loopback(parts.hostname):
        raise InstallError(
            f"relay.public_url {url!r}: a real portal frames the tab and posts events only to"
            " https; put the relay behind TLS (http is accepted for loopback only)"
        )
    return url.rstrip("/")


def target(
    settings: Settings,
    public_url: str | None = None,
    *,
    online: bool = True,
    offline: bool = True,
) -> Target:
    base = check_public_url(public_url if public_url is not None else settings.relay.public_url)
    title = Texts(settings.deal_card.templates)("tab_title")
    return Target(
        tab_handler=base + TAB_PATH,
        tab_title=title,
        events_handler=base + EVENTS_PATH if online else "",
        online_events=ONLINE_EVENTS if online else (),
        offline_events=tuple(e.upper() for e in settings.relay.offline_events) if offline else (),
    )


# ------------------------------------------------------------------ what is bound, what to do
@dataclass(frozen=True)
class Step:
    """One registration: `kind` placement / online / offline; `action` bind, unbind or ok."""

    kind: str
    name: str
    handler: str
    action: str

    def describe(self) -> str:
        what = {"placement": "tab", "online": "online event", "offline": "offline event"}[self.kind]
        where = f" → {self.handler}" if self.handler else ""
        verb = {"ok": "already bound", "bind": "bind", "unbind": "unbind (stale)"}[self.action]
        return f"{what} {self.name}{where}: {verb}"


@dataclass
class Plan:
    steps: list[Step] = field(default_factory=list)

    @property
    def changes(self) -> list[Step]:
        return [s for s in self.steps if s.action != "ok"]

    @property
    def done(self) -> bool:
        return not self.changes


def _ours(handler: str, path: str, wanted: str) -> bool:
    """A handler of this product at another address (the public URL changed)."""
    return handler != wanted and urlsplit(handler).path.rstrip("/").endswith(path)


def plan_from(
    goal: Target, placements: Iterable[Mapping[str, Any]], bindings: Iterable[Mapping[str, Any]]
) -> Plan:
    """Compare what `placement.get` and `event.get` answered with the goal."""
    plan = Plan()
    if goal.tab_handler:
        tabs = [p for p in placements if str(p.get("placement", "")).upper() == DEAL_TAB]
        tab_handlers = [str(p.get("handler", "")) for p in tabs]
        for handler in tab_handlers:
            if _ours(handler, TAB_PATH, goal.tab_handler):
                plan.steps.append(Step("placement", DEAL_TAB, handler, "unbind"))
        action = "ok" if goal.tab_handler in tab_handlers else "bind"
        plan.steps.append(Step("placement", DEAL_TAB, goal.tab_handler, action))
    rows = [r for r in bindings if isinstance(r, Mapping)]
    online = [r for r in rows if str(r.get("offline", "0")) != "1"]
    offline = {str(r.get("event", "")).upper() for r in rows if str(r.get("offline")) == "1"}
    for event in goal.online_events:
        handlers = [str(r.get("handler", "")) for r in online if _event(r) == event]
        for handler in handlers:
            if _ours(handler, EVENTS_PATH, goal.events_handler):
                plan.steps.append(Step("online", event, handler, "unbind"))
        action = "ok" if goal.events_handler in handlers else "bind"
        plan.steps.append(Step("online", event, goal.events_handler, action))
    for event in goal.offline_events:
        plan.steps.append(Step("offline", event, "", "ok" if event in offline else "bind"))
    return plan


def _event(row: Mapping[str, Any]) -> str:
    return str(row.get("event", "")).upper()


def _explain(exc: Bitrix24Error, method: str) -> InstallError:
    code = exc.code.upper()
    if code == "WRONG_AUTH_TYPE":
        return InstallError(
            f"{method}: the token is not the local application's OAuth token (a webhook cannot"
            " bind widgets or events): set bitrix24.app_access_token to the application's token"
        )
    if code == "INSUFFICIENT_SCOPE":
        return InstallError(
            f"{method}: the local application lacks a scope ({', '.join(REQUIRED_SCOPES)} are"
            " needed): add it in the application's settings on the portal and re-install it"
        )
    if code == "ACCESS_DENIED" or exc.status == 403:
        return InstallError(
            f"{method}: access denied — the application's token must be an administrator's"
            " (install the local application as a portal administrator)"
        )
    if code in ("EXPIRED_TOKEN", "INVALID_TOKEN", "NO_AUTH_FOUND"):
        return InstallError(
            f"{method}: the application's token is {code.lower()}: set a fresh"
            " bitrix24.app_access_token, or app_client_id/app_client_secret/app_refresh_token"
        )
    return InstallError(f"{method}: {exc.code}: {exc.description}")


async def _read(client: Caller, method: str) -> list[dict[str, Any]]:
    try:
        answer = await client.call(method, {})
    except Bitrix24Error as exc:
        raise _explain(exc, method) from exc
    return [row for row in answer or [] if isinstance(row, dict)]


async def check_scopes(client: Caller, goal: Target) -> None:
    """The token is an application's (`app.info` answers only in an application's context)
    and has the scopes the goal needs."""
    try:
        await client.call("app.info", {})
    except Bitrix24Error as exc:
        raise _explain(exc, "app.info") from exc
    try:
        scopes = set(await client.call("scope", {}) or [])
    except Bitrix24Error as exc:
        raise _explain(exc, "scope") from exc
    needed = ["crm", "placement"] + (["task"] if any(_is_task(e) for e in _events(goal)) else [])
    missing = [s for s in needed if s not in scopes]
    if missing:
        raise InstallError(
            f"the local application lacks scope {', '.join(missing)} (it has"
            f" {', '.join(sorted(scopes)) or 'none'}): add {', '.join(REQUIRED_SCOPES)} in the"
            " application's settings on the portal and re-install it"
        )


def _events(goal: Target) -> Iterable[str]:
    return (*goal.online_events, *goal.offline_events)


def _is_task(event: str) -> bool:
    return event.startswith("ONTASK")


async def plan(client: Caller, goal: Target) -> Plan:
    """What is bound and what would be done (read-only: scope, placement.get, event.get)."""
    await check_scopes(client, goal)
    placements = await _read(client, "placement.get")
    bindings = await _read(client, "event.get")
    return plan_from(goal, placements, bindings)


async def apply(client: Caller, goal: Target, todo: Plan) -> list[Step]:
    """Carry out the plan's changes; a registration found bound meanwhile counts as done."""
    done: list[Step] = []
    for step in todo.changes:
        method, params = _call_of(goal, step)
        try:
            await client.call(method, params)
        except Bitrix24Error as exc:
            if not _already(exc):
                raise _explain(exc, method) from exc
        log.info("app install: %s", step.describe())
        done.append(step)
    return done


def _already(exc: Bitrix24Error) -> bool:
    return exc.code.upper() == _HANDLER_EXISTS or "already binded" in exc.description


def _call_of(goal: Target, step: Step) -> tuple[str, dict[str, Any]]:
    if step.kind == "placement":
        if step.action == "unbind":
            return "placement.unbind", {"PLACEMENT": step.name, "HANDLER": step.handler}
        return "placement.bind", {
            "PLACEMENT": step.name,
            "HANDLER": step.handler,
            "TITLE": goal.tab_title,
            "LANG_ALL": {"ru": {"TITLE": goal.tab_title}},
        }
    if step.kind == "online":
        verb = "event.unbind" if step.action == "unbind" else "event.bind"
        return verb, {"event": step.name, "handler": step.handler}
    return "event.bind", {"event": step.name, "event_type": "offline"}


async def install(client: Caller, goal: Target) -> tuple[Plan, list[Step]]:
    """Plan and apply: the plan (with what was already bound) and the steps carried out."""
    todo = await plan(client, goal)
    return todo, await apply(client, goal, todo)


# ------------------------------------------------------------------ the relay's offline events
async def bind_offline_events(client: Caller, events: Sequence[str]) -> list[str]:
    """Bind `events` as offline where they are not bound yet (`event.get` first); the ones
    bound now. The relay's drainer and `salesflow app install` both bind through this."""
    wanted = [e.upper() for e in events]
    if not wanted:
        return []
    goal = Target("", "", "", (), tuple(wanted))
    steps = plan_from(goal, [], await client.call("event.get", {}) or []).changes
    for step in steps:
        try:
            await client.call("event.bind", {"event": step.name, "event_type": "offline"})
        except Bitrix24Error as exc:
            if exc.code.upper() != _HANDLER_EXISTS:
                raise
    return [s.name for s in steps]


# ------------------------------------------------------------------ the application's client
@contextlib.asynccontextmanager
async def application_caller(settings: Settings) -> AsyncIterator[Caller]:
    """The local application's client: the configured token, refreshed on expiry through the
    relay's token table (the same pair the relay uses, so a spent refresh token is kept)."""
    b24 = settings.bitrix24
    if not (b24.app_access_token or b24.app_refresh_configured()):
        raise InstallError(
            "no local application configured: set bitrix24.app_access_token (and, for the hourly"
            " refresh, app_client_id, app_client_secret, app_refresh_token) — a webhook cannot"
            " bind widgets or events"
        )
    client = Bitrix24Client(
        b24.app_rest_base(),
        access_token=b24.app_access_token or "-",
        rate_per_second=b24.rate_per_second,
        burst=b24.burst,
        coalesce=False,
        timeout=30.0,
    )
    engine = database_engine(settings.database) if b24.app_refresh_configured() else None
    try:
        if engine is not None:
            try:
                await init_db(engine)
            except DatabaseUnavailable as exc:
                raise InstallError(f"the relay's database (token store): {exc}") from exc
            assert isinstance(client, TokenBearer)  # an OAuth client: its token is replaced
            caller: Caller = RefreshingCaller(client, application_tokens(settings, engine))
        else:
            caller = client
        yield caller
    finally:
        await client.aclose()
        if engine is not None:
            await engine.dispose()


def _print_plan(console: Console, todo: Plan) -> None:
    for step in todo.steps:
        mark = "[green]✓[/green]" if step.action == "ok" else "[yellow]→[/yellow]"
        console.print(f"{mark} {step.describe()}", highlight=False)


async def _run(
    settings: Settings, console: Console, goal: Target, dry_run: bool
) -> tuple[Plan, list[Step]]:
    async with application_caller(settings) as caller:
        todo = await plan(caller, goal)
        _print_plan(console, todo)
        if dry_run or todo.done:
            return todo, []
        return todo, await apply(caller, goal, todo)


def main(
    settings: Settings,
    console: Console,
    *,
    public_url: str | None = None,
    dry_run: bool = False,
    online: bool = True,
    offline: bool = True,
) -> int:
    """`salesflow app install`: 0 when everything is bound (or would be, with --dry-run)."""
    try:
        goal = target(settings, public_url, online=online, offline=offline)
        todo, done = asyncio.run(_run(settings, console, goal, dry_run))
    except InstallError as exc:
        console.print(f"app install: {exc}", style="red", markup=False, highlight=False)
        return 2
    except (TokenRefreshError, Bitrix24Error) as exc:
        console.print(f"app install: {exc}", style="red", markup=False, highlight=False)
        return 2
    if todo.done:
        console.print("nothing to change: the application is installed as configured")
    elif dry_run:
        console.print(f"dry run: {len(todo.changes)} change(s) would be made, none made")
    else:
        console.print(f"installed: {len(done)} change(s) made")
    return 0
