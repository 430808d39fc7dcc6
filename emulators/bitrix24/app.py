"""The Bitrix24 emulator: an ASGI app serving a portal's REST API.

Routes: the incoming webhook `/rest/<user>/<secret>/<method>` and the local application's
OAuth route `/rest/<method>` (token in `auth=`, `access_token=` or `Authorization: Bearer`;
the seed installs one app whose token is `seed.LOCAL_APP_ACCESS_TOKEN`; it expires after
`token_ttl` seconds, default an hour) and the OAuth server's `/oauth/token/` that refreshes it
(`oauth.py`).
`create_app()` builds it; `app.state.portal` is the in-memory `Portal` (tests inspect it) and
`app.state.events` the outbound-event dispatcher. Admin endpoints live under `/_emulator/`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from fastapi import FastAPI, Request, Response
from starlette.background import BackgroundTask

from emulators.bitrix24 import (  # noqa: F401  (importing registers the methods)
    batch,
    contacts,
    deals,
    event_methods,
    items,
    people,
    placements,
    products,
    tasks,
    timeline,
)
from emulators.bitrix24.admin import admin_routes
from emulators.bitrix24.auth import Caller, oauth_caller, take_token, webhook_caller
from emulators.bitrix24.batch import run_counted, timing
from emulators.bitrix24.card_page import card_page_routes
from emulators.bitrix24.events import EventDispatcher, Origin
from emulators.bitrix24.files import GET_FILE, file_by_token
from emulators.bitrix24.limits import BUCKET_PLANS, DEFAULT_OPERATING_LIMIT
from emulators.bitrix24.oauth import oauth_routes
from emulators.bitrix24.query import Page
from emulators.bitrix24.registry import CallContext, RestError, invoke
from emulators.bitrix24.seed import Seed, load_seed
from emulators.bitrix24.state import ACCESS_TOKEN_TTL, Fault, Portal
from emulators.bitrix24.values import php_json, to_int
from salesflow.integrations.bitrix24 import php_form

log = logging.getLogger(__name__)

_JSON = "application/json; charset=utf-8"
_HEADERS = {"Access-Control-Allow-Origin": "*"}


# ------------------------------------------------------------------ portal construction
def populate(portal: Portal) -> None:
    """Create the seed's companies, contacts, deals and tasks through the normal methods."""
    ctx = CallContext(portal, portal.webhook_user_id)
    records = portal.seeded_records
    for company in records["companies"]:
        contacts.create_client(ctx, contacts.COMPANY, company, to_int(company.get("ID")))
    for contact in records["contacts"]:
        contacts.create_client(ctx, contacts.CONTACT, contact, to_int(contact.get("ID")))
    for deal in records["deals"]:
        deals.create_deal(ctx, deal, to_int(deal.get("ID")))
    for task in records["tasks"]:
        tasks.create_task(ctx, task, to_int(task.get("ID")))
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
    plan: str | None = None,
    operating_limit: float | None = DEFAULT_OPERATING_LIMIT,
    token_ttl: float | None = ACCESS_TOKEN_TTL,
) -> Portal:
    """A populated portal. `plan` ("standard" 2/s burst 50, "enterprise" 5/s burst 250)
    overrides `rate_per_second`/`burst`; `operating_limit` None turns the 429 limit off;
    `token_ttl` is the local app's access-token lifetime in seconds (None: never expires)."""
    if plan is not None:
        rate_per_second, burst = BUCKET_PLANS[plan]
    portal = Portal(
        seed=seed if seed is not None else load_seed(),
        secret=secret,
        handler_url=handler_url,
        application_token=application_token,
        rate_per_second=rate_per_second,
        burst=burst,
        operating_limit=operating_limit,
        token_ttl=token_ttl,
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


def _envelope(outcome: Any, started: float, operating: Any = None) -> dict[str, Any]:
    envelope: dict[str, Any] = {}
    if isinstance(outcome, Page):
        envelope["result"] = outcome.result
        if outcome.next is not None:
            envelope["next"] = outcome.next
        envelope["total"] = outcome.total
    else:
        envelope["result"] = outcome
    envelope["time"] = timing(started, time.time(), operating)
    return envelope


async def _fault_response(fault: Fault) -> Response | None:
    """Answer an injected fault (after its delay); None lets a slow call run normally."""
    if fault.delay > 0:
        await asyncio.sleep(fault.delay)
    if fault.passthrough:
        return None
    headers = {"Location": fault.location} if fault.location else None
    return Response(fault.body, fault.status, headers=headers, media_type=fault.content_type)


def _source(request: Request) -> str:
    return request.client.host if request.client else ""


async def handle_rest(
    request: Request,
    portal: Portal,
    events: EventDispatcher,
    method_path: str,
    webhook: tuple[str, str] | None,
) -> Response:
    """One REST request: faults, blocks, auth, the bucket, the operating limit, the method.

    `webhook` is (user_id, secret) for the webhook route, None for the OAuth route.
    """
    started = time.time()
    name = _method_name(method_path)
    portal.calls[name] += 1
    portal.requests += 1
    fault = portal.take_fault(name)
    if fault is not None:
        answer = await _fault_response(fault)
        if answer is not None:
            return answer
    if portal.block is not None:
        block = portal.block
        return _error(RestError(block["code"], block["description"], block["status"]))
    try:
        params = await read_params(request)
    except ValueError as exc:
        return _error(RestError("ERROR_ARGUMENT", f"Wrong request parameters: {exc}"))
    try:
        if webhook is not None:
            params.pop("auth", None)
            caller: Caller = webhook_caller(portal, *webhook, scheme=request.url.scheme)
        else:
            token = take_token(params, request.headers.get("authorization"))
            caller = oauth_caller(portal, token)
    except RestError as error:
        return _error(error)
    if not portal.bucket.try_acquire(source=_source(request)):
        portal.rejected[name] += 1
        return _error(RestError("QUERY_LIMIT_EXCEEDED", "Too many requests", 503))
    if name == GET_FILE.lower():  # a file field's `urlMachine` (files.py): the content, not JSON
        found = file_by_token(portal, str(params.get("token") or ""))
        if found is None:
            return _error(RestError("NOT_FOUND", "File not found", 404))
        file_name, content = found
        return Response(
            content,
            200,
            headers={"Content-Disposition": f"attachment; filename*=UTF-8''{quote(file_name)}"},
            media_type="application/octet-stream",
        )
    connector = params.pop("auth_connector", "")
    ctx = CallContext(
        portal,
        caller.user_id,
        host=request.headers.get("host", "127.0.0.1"),
        scheme=request.url.scheme,
        app_id=caller.app_id,
        auth_connector=connector if isinstance(connector, str) else "",
        scopes=caller.scopes,
        caller_key=caller.key,
    )
    try:
        if name == "batch":  # the outer batch is not counted; its commands are
            outcome, operating = invoke(ctx, name, params), None
        else:
            outcome, operating = run_counted(ctx, name, params)
        response = Response(
            php_json(_envelope(outcome, started, operating)),
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
    plan: str | None = None,
    operating_limit: float | None = DEFAULT_OPERATING_LIMIT,
    token_ttl: float | None = ACCESS_TOKEN_TTL,
    event_delay: float = 0.0,
    event_jitter: float = 0.0,
    event_drop_rate: float = 0.0,
    event_seed: int = 0,
) -> FastAPI:
    """The emulator app. With `portal` given, that portal (and its own settings) is served.

    Outbound delivery: `event_delay` seconds after the call, plus up to `event_jitter`
    seconds at random (events may overtake each other), dropped with `event_drop_rate`;
    the randomness is seeded with `event_seed`.
    """
    if portal is None:
        portal = build_portal(
            seed,
            secret=secret,
            handler_url=handler_url,
            application_token=application_token,
            rate_per_second=rate_per_second,
            burst=burst,
            plan=plan,
            operating_limit=operating_limit,
            token_ttl=token_ttl,
        )
        portal.event_delay, portal.event_jitter = event_delay, event_jitter
        portal.event_drop_rate, portal.event_rng = event_drop_rate, random.Random(event_seed)
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
    admin_routes(app, portal, events, populate)
    oauth_routes(app, portal)
    card_page_routes(app, portal)

    @app.api_route("/rest/{user_id}/{secret}/{method_path:path}", methods=["GET", "POST"])
    async def webhook(request: Request, user_id: str, secret: str, method_path: str) -> Response:
        return await handle_rest(request, portal, events, method_path, (user_id, secret))

    @app.api_route("/rest/{method_path:path}", methods=["GET", "POST"])
    async def oauth(request: Request, method_path: str) -> Response:
        return await handle_rest(request, portal, events, method_path, None)

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
    plan: str | None = None,
    operating_limit: float | None = DEFAULT_OPERATING_LIMIT,
    token_ttl: float | None = ACCESS_TOKEN_TTL,
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
        plan=plan,
        operating_limit=operating_limit,
        token_ttl=token_ttl,
    )
    uvicorn.run(create_app(portal), host=host, port=port, log_level="info")
