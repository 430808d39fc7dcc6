"""The Bitrix24 emulator: an ASGI app serving `/rest/<user>/<secret>/<method>` like a portal.

`create_app()` builds it; `app.state.portal` is the in-memory `Portal` (tests inspect it) and
`app.state.events` the outbound-event dispatcher. Admin endpoints live under `/_emulator/`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from fastapi import FastAPI, Request, Response
from pydantic import BaseModel
from starlette.background import BackgroundTask

from integrations.bitrix24 import (  # noqa: F401  (importing registers the methods)
    emulator_batch,
    emulator_contacts,
    emulator_deals,
    emulator_items,
    emulator_people,
    emulator_tasks,
    emulator_timeline,
    php_form,
)
from integrations.bitrix24.emulator_batch import timing
from integrations.bitrix24.emulator_events import EventDispatcher, Origin
from integrations.bitrix24.emulator_query import Page
from integrations.bitrix24.emulator_registry import CallContext, RestError, invoke
from integrations.bitrix24.emulator_state import Portal
from integrations.bitrix24.emulator_values import php_json, to_int
from integrations.bitrix24.seed import Seed, load_seed

log = logging.getLogger(__name__)

_JSON = "application/json; charset=utf-8"
_HEADERS = {"Access-Control-Allow-Origin": "*"}


# ------------------------------------------------------------------ portal construction
def populate(portal: Portal) -> None:
    """Create the seed's companies, contacts, deals and tasks through the normal methods."""
    ctx = CallContext(portal, portal.webhook_user_id)
    records = portal.seeded_records
    for company in records["companies"]:
        emulator_contacts.create_client(
            ctx, emulator_contacts.COMPANY, company, to_int(company.get("ID"))
        )
    for contact in records["contacts"]:
        emulator_contacts.create_client(
            ctx, emulator_contacts.CONTACT, contact, to_int(contact.get("ID"))
        )
    for deal in records["deals"]:
        emulator_deals.create_deal(ctx, deal, to_int(deal.get("ID")))
    for task in records["tasks"]:
        emulator_tasks.create_task(ctx, task, to_int(task.get("ID")))
    portal.event_log.clear()
    portal.populated = True


def build_portal(
    seed: Seed | None = None,
    *,
    secret: str = "devsecret",
    handler_url: str | None = None,
    application_token: str = "dev-app-token",
    rate_per_second: float | None = 2.0,
    burst: int = 50,
) -> Portal:
    portal = Portal(
        seed=seed if seed is not None else load_seed(),
        secret=secret,
        handler_url=handler_url,
        application_token=application_token,
        rate_per_second=rate_per_second,
        burst=burst,
    )
    populate(portal)
    return portal


# ------------------------------------------------------------------ request handling
def _method_name(path: str) -> str:
    name = path.strip("/").lower()
    for suffix in (".json", ".xml"):
        name = name.removesuffix(suffix)
    return name


def _json_object(body: bytes) -> dict[str, Any]:
    try:
        data = json.loads(body or b"{}")
    except ValueError:
        return {}  # the portal treats malformed JSON as no parameters
    if isinstance(data, list):
        return {str(index): value for index, value in enumerate(data)}
    return data if isinstance(data, dict) else {}


async def read_params(request: Request) -> dict[str, Any]:
    """Query string, then the body (urlencoded, multipart or JSON) merged over it."""
    params = php_form.decode(request.url.query)
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == "application/json":
        params.update(_json_object(await request.body()))
    elif content_type == "application/x-www-form-urlencoded":
        params.update(php_form.decode(await request.body()))
    elif content_type == "multipart/form-data":
        form = await request.form()
        pairs = [
            (k, v if isinstance(v, str) else (v.filename or "")) for k, v in form.multi_items()
        ]
        params.update(php_form.decode(urlencode(pairs)))
    return params


def _error(error: RestError) -> Response:
    return Response(php_json(error.body()), error.status, headers=_HEADERS, media_type=_JSON)


def _envelope(outcome: Any, started: float) -> dict[str, Any]:
    envelope: dict[str, Any] = {}
    if isinstance(outcome, Page):
        envelope["result"] = outcome.result
        if outcome.next is not None:
            envelope["next"] = outcome.next
        envelope["total"] = outcome.total
    else:
        envelope["result"] = outcome
    envelope["time"] = timing(started, time.time())
    return envelope


async def handle_rest(
    request: Request,
    portal: Portal,
    events: EventDispatcher,
    user_id: str,
    secret: str,
    method_path: str,
) -> Response:
    started = time.time()
    name = _method_name(method_path)
    portal.calls[name] += 1
    fault = portal.take_fault(name)
    if fault is not None:
        return Response(fault.body, fault.status, media_type=fault.content_type)
    caller = to_int(user_id)
    if caller is None or portal.webhooks.get(secret) != caller or caller not in portal.users:
        return _error(RestError("INVALID_CREDENTIALS", "Invalid request credentials", 401))
    if not portal.bucket.try_acquire():
        portal.rejected[name] += 1
        return _error(RestError("QUERY_LIMIT_EXCEEDED", "Too many requests", 503))
    try:
        params = await read_params(request)
    except ValueError as exc:
        return _error(RestError("ERROR_ARGUMENT", f"Wrong request parameters: {exc}"))
    ctx = CallContext(
        portal, caller, host=request.headers.get("host", "127.0.0.1"), scheme=request.url.scheme
    )
    try:
        response = Response(
            php_json(_envelope(invoke(ctx, name, params), started)),
            200,
            headers=_HEADERS,
            media_type=_JSON,
        )
    except RestError as error:
        response = _error(error)
    except Exception:
        log.exception("emulated method %s failed", name)
        response = _error(RestError("INTERNAL_SERVER_ERROR", "Internal server error", 500))
    response.headers["X-Bitrix-Rest-Time"] = f"{time.time() - started:.6f}"
    if ctx.events:
        response.background = BackgroundTask(
            events.enqueue, list(ctx.events), Origin(ctx.host, ctx.scheme)
        )
    return response


# ------------------------------------------------------------------ admin endpoints
class HandlerSettings(BaseModel):
    url: str | None = None
    application_token: str | None = None
    events: list[str] | None = None
    delay: float | None = None


class FaultSpec(BaseModel):
    count: int = 1
    status: int = 503
    body: str | None = None
    content_type: str = "text/html; charset=utf-8"
    method: str | None = None


class RateLimit(BaseModel):
    rate_per_second: float | None = None
    burst: int = 50


def _admin_routes(app: FastAPI, portal: Portal, events: EventDispatcher) -> None:
    @app.get("/_emulator/state")
    async def state() -> dict[str, Any]:
        return {**portal.summary(), "events": events.describe()}

    @app.post("/_emulator/handler")
    async def set_handler(settings: HandlerSettings) -> dict[str, Any]:
        portal.handler_url = settings.url
        if settings.application_token is not None:
            portal.application_token = settings.application_token
        if settings.events is not None:
            portal.subscribed_events = {e.upper() for e in settings.events}
        if settings.delay is not None:
            portal.event_delay = settings.delay
        return {
            "handler_url": portal.handler_url,
            "subscribed_events": sorted(portal.subscribed_events),
        }

    @app.post("/_emulator/faults")
    async def add_fault(spec: FaultSpec) -> dict[str, Any]:
        portal.inject_fault(
            spec.count,
            status=spec.status,
            body=spec.body,
            content_type=spec.content_type,
            method=spec.method,
        )
        return {"faults": len(portal.faults)}

    @app.delete("/_emulator/faults")
    async def clear_faults() -> dict[str, Any]:
        portal.faults.clear()
        return {"faults": 0}

    @app.post("/_emulator/rate-limit")
    async def set_rate_limit(limit: RateLimit) -> dict[str, Any]:
        portal.bucket.configure(limit.rate_per_second, limit.burst)
        return {"rate_per_second": portal.bucket.rate, "burst": portal.bucket.capacity}

    @app.post("/_emulator/reset")
    async def reset() -> dict[str, Any]:
        await events.drain()
        portal.load(portal.seed)
        populate(portal)
        for log_or_counter in (
            portal.calls,
            portal.batch_calls,
            portal.rejected,
            portal.deliveries,
            portal.faults,
            portal.event_log,
        ):
            log_or_counter.clear()
        portal.bucket.reset()
        return {"reset": True}


# ------------------------------------------------------------------ app
def create_app(
    portal: Portal | None = None,
    *,
    secret: str = "devsecret",
    handler_url: str | None = None,
    application_token: str = "dev-app-token",
    rate_per_second: float | None = 2.0,
    burst: int = 50,
    seed: Seed | None = None,
) -> FastAPI:
    """The emulator app. With `portal` given, that portal (and its own settings) is served."""
    if portal is None:
        portal = build_portal(
            seed,
            secret=secret,
            handler_url=handler_url,
            application_token=application_token,
            rate_per_second=rate_per_second,
            burst=burst,
        )
    elif not portal.populated:
        populate(portal)
    events = EventDispatcher(portal)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        await events.aclose()

    app = FastAPI(
        title="Bitrix24 emulator",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.state.portal = portal
    app.state.events = events
    _admin_routes(app, portal, events)

    @app.api_route("/rest/{user_id}/{secret}/{method_path:path}", methods=["GET", "POST"])
    async def webhook(request: Request, user_id: str, secret: str, method_path: str) -> Response:
        return await handle_rest(request, portal, events, user_id, secret, method_path)

    @app.api_route("/rest/{method_path:path}", methods=["GET", "POST"])
    async def oauth(request: Request, method_path: str) -> Response:
        portal.calls[_method_name(method_path)] += 1
        return _error(RestError("NO_AUTH_FOUND", "Wrong authorization data", 401))

    return app


def run(
    host: str = "127.0.0.1",
    port: int = 8081,
    secret: str = "devsecret",
    handler_url: str | None = None,
    application_token: str = "dev-app-token",
    seed_path: str | Path | None = None,
    *,
    rate_per_second: float | None = 2.0,
    burst: int = 50,
) -> None:
    """Serve the emulator in the foreground (used by `salesflow emulate bitrix24`)."""
    import uvicorn

    portal = build_portal(
        load_seed(seed_path),
        secret=secret,
        handler_url=handler_url,
        application_token=application_token,
        rate_per_second=rate_per_second,
        burst=burst,
    )
    uvicorn.run(create_app(portal), host=host, port=port, log_level="info")
