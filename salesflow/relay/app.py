"""The relay's web app: Bitrix24 outbound events in, recorded durably, forwarded to Temporal."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.api.workflowservice.v1 import GetSystemInfoRequest
from temporalio.client import Client

from salesflow.config.settings import Settings
from salesflow.deal_card.app import deal_card_router
from salesflow.integrations.bitrix24.client import Bitrix24Client
from salesflow.relay.fast_path import EVENTS_PATH, EventsFastPath
from salesflow.relay.forwarder import Bitrix24Caller, Forwarder, ForwarderOptions
from salesflow.relay.group_commit import Overloaded
from salesflow.relay.health import OK, CachedProbe
from salesflow.relay.intake import (
    EVENT_KEY,
    FORM_CONTENT_TYPE,
    TOKEN_KEY,
    BadEvent,
    InboundEvent,
    Unauthorized,
    check_token_raw,
    count_params,
    decode_form,
    parse_event,
    scan_fields,
)
from salesflow.relay.limits import BodyGuard
from salesflow.relay.metrics import RelayMetrics
from salesflow.relay.offline import OfflineDrainer
from salesflow.relay.periodic import Periodic
from salesflow.relay.recorder import Recorder
from salesflow.relay.scan import DealScanner
from salesflow.store import inbox, signal_marks
from salesflow.store.db import init_db, ping
from salesflow.store.portal_bucket import shared_by_database
from salesflow.workflows.names import DEAL_EVENTS, TASK_EVENTS, UPDATE_EVENTS

log = logging.getLogger("salesflow.relay")

INLINE_PARSE_BYTES = 2048  # larger forms are decoded in a thread (over ~1 ms of work)
REFUSAL_LOG_SECONDS = 10.0  # refused POSTs are logged once per this, with the count between


SAME_SECOND = "same-second change"
KNOWN_EVENTS = DEAL_EVENTS | TASK_EVENTS


def _detail(description: str) -> dict[str, Any]:
    schema = {"type": "object", "properties": {"detail": {"type": "string"}}}
    return {"description": description, "content": {"application/json": {"schema": schema}}}


EVENT_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "Recorded durably (`status` recorded, or duplicate of row `id`)",
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "status": {"type": "string", "enum": ["recorded", "duplicate"]},
                        "id": {"type": "integer"},
                    },
                }
            }
        },
    },
    400: _detail("Not a usable event: the detail names the field (or the form's limit)"),
    401: _detail("Wrong or missing auth[application_token]; nothing recorded"),
    408: _detail("The body did not arrive within relay.body_timeout_seconds"),
    413: _detail("The body is over relay.max_body_bytes (refused while it streams in)"),
    415: _detail("Not application/x-www-form-urlencoded"),
    503: _detail("The inbox (database) did not record the event in time; send it again"),
}
EVENT_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            FORM_CONTENT_TYPE: {
                "schema": {
                    "type": "object",
                    "description": "A Bitrix24 outbound event, PHP-bracket keys",
                    "properties": {
                        "event": {"type": "string", "maxLength": 64},
                        "data[FIELDS][ID]": {"type": "string", "pattern": "^[0-9]{1,19}$"},
                        "ts": {"type": "string", "pattern": "^[0-9]{1,19}$"},
                        "auth[application_token]": {"type": "string"},
                    },
                    "required": ["event", "ts", "auth[application_token]"],
                }
            }
        },
    }
}


def create_app(
    settings: Settings,
    *,
    engine: AsyncEngine,
    temporal_client: Client,
    bitrix24_client: Bitrix24Caller | None = None,
    forwarder_options: ForwarderOptions | None = None,
    offline_client: Bitrix24Caller | None = None,
) -> FastAPI:
    """The relay. Without `bitrix24_client` one is built from `settings.bitrix24` at start-up.

    The engine and the Temporal client belong to the caller; the app creates the inbox table
    if needed, runs the retry loop, the offline-queue drain and the deal scan while it lives
    and closes only what it built itself. The drain runs with `offline_client`, else with a
    client of the local application's token (`bitrix24.app_access_token`, or one got with
    `bitrix24.app_refresh_token`), else not at all.
    """
    forwarder = Forwarder(settings, engine, temporal_client, bitrix24_client, forwarder_options)
    recorder = Recorder(engine, forwarder)
    token = settings.bitrix24.application_token
    drainer = OfflineDrainer(settings, engine, forwarder, offline_client)
    scanner = DealScanner(settings, engine, forwarder)
    relay = settings.relay
    offline = None
    b24 = settings.bitrix24
    if relay.offline_interval_seconds > 0 and (
        offline_client is not None or b24.app_access_token or b24.app_refresh_configured()
    ):
        offline = Periodic("offline-queue drain", relay.offline_interval_seconds, drainer.drain)
    scan = None
    if relay.scan_interval_seconds > 0:
        scan = Periodic("deal scan", relay.scan_interval_seconds, scanner.scan)

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await init_db(engine)
        async with contextlib.AsyncExitStack() as stack:
            if settings.bitrix24.shared_bucket:
                stack.enter_context(shared_by_database(engine))
            if bitrix24_client is None:
                forwarder.bitrix24_client = await stack.enter_async_context(
                    _bitrix24_client(settings)
                )
            if offline is not None and offline_client is None:
                drainer.client = await stack.enter_async_context(_application_client(settings))
            loops = [asyncio.create_task(forwarder.run(), name="relay-forwarder")]
            loops += [
                asyncio.create_task(job.run(), name=f"relay-{job.name}")
                for job in (offline, scan)
                if job is not None
            ]
            try:
                yield
            finally:
                for loop in loops:
                    loop.cancel()
                await asyncio.gather(*loops, return_exceptions=True)
                for probe in _app.state.health_probes.values():
                    await probe.close()
                await recorder.close()
                await forwarder.close()
                if bitrix24_client is None:
                    forwarder.bitrix24_client = None
                drainer.client = offline_client

    docs = relay.api_docs
    app = FastAPI(
        title="salesflow relay",
        lifespan=lifespan,
        docs_url="/docs" if docs else None,
        redoc_url="/redoc" if docs else None,
        openapi_url="/openapi.json" if docs else None,
    )
    if settings.deal_card.enabled:  # the deal card's tab shares the public port (issue 12)
        app.include_router(deal_card_router(settings, temporal_client))
    app.state.forwarder = forwarder
    app.state.engine = engine
    app.state.offline = offline  # Periodic | None: `await app.state.offline.run_once()`
    app.state.scan = scan
    app.state.drainer = drainer
    app.state.scanner = scanner
    metrics = RelayMetrics(KNOWN_EVENTS)
    app.state.metrics = metrics
    forwarder.observer = metrics.settled_row
    refusals = _RefusalLog()
    nudging: set[int] = set()  # rows whose repeat is being looked at (in the background)

    async def accept_event(content_type: str, body: bytes, peer: str) -> tuple[int, dict[str, Any]]:
        """POST /bitrix24/events: (status, JSON answer). `body` is whole (BodyGuard)."""
        if not content_type.lower().startswith(FORM_CONTENT_TYPE):
            await asyncio.sleep(relay.refusal_delay_seconds)
            return 415, {"detail": f"expected {FORM_CONTENT_TYPE}"}
        # Nothing but a count and one pass over the pairs before the caller is known.
        fields: dict[str, bytes] = {}
        try:
            count_params(body)
            fields = scan_fields(body)
            check_token_raw(fields.get(TOKEN_KEY), token)
        except BadEvent as exc:
            metrics.received_event("", "bad")
            await asyncio.sleep(relay.refusal_delay_seconds)
            return 400, {"detail": str(exc)}
        except Unauthorized as exc:
            metrics.received_event(_event_name(fields), "rejected")
            refusals.note(peer, str(exc))
            await asyncio.sleep(relay.refusal_delay_seconds)
            return 401, {"detail": "wrong or missing auth[application_token]"}
        try:
            if len(body) > INLINE_PARSE_BYTES:
                form = await asyncio.to_thread(decode_form, body)
            else:
                form = decode_form(body)
            event = parse_event(form)
        except BadEvent as exc:
            metrics.received_event(_event_name(fields), "bad")
            return 400, {"detail": str(exc)}
        timeout = relay.database_timeout_seconds
        try:
            async with asyncio.timeout(timeout):  # the write itself goes on (group commit)
                recorded = await recorder.record(
                    inbox.NewEvent(event.event, event.entity_id, event.ts, event.payload)
                )
        except (TimeoutError, Overloaded) as exc:
            why = str(exc) or f"the inbox did not answer within {timeout:g} s"
            log.warning("%s: %s %s not recorded", why, event.event, event.entity_id)
            metrics.received_event(event.event, "unavailable")
            return 503, {"detail": f"{why}; send it again"}
        except Exception:
            log.exception("could not record %s %s", event.event, event.entity_id)
            metrics.received_event(event.event, "unavailable")
            return 503, {"detail": "the inbox is unavailable; the event was not recorded"}
        row_id, is_new = recorded.id, recorded.is_new
        metrics.received_event(event.event, "recorded" if is_new else "duplicate")
        if not is_new and event.event in UPDATE_EVENTS and row_id not in nudging:
            nudging.add(row_id)
            forwarder.spawn(_nudge_again(row_id, event), lambda: nudging.discard(row_id))
        return 200, {"status": "recorded" if is_new else "duplicate", "id": row_id}

    # The route documents the endpoint (OpenAPI); `EventsFastPath` answers it before FastAPI's
    # routing, request and response objects (a third of the relay's CPU per event).
    @app.post(EVENTS_PATH, responses=EVENT_RESPONSES, openapi_extra=EVENT_BODY)
    async def bitrix24_event(request: Request) -> JSONResponse:
        content_type = request.headers.get("content-type", FORM_CONTENT_TYPE)
        status, answer = await accept_event(content_type, await request.body(), _peer(request))
        return JSONResponse(answer, status_code=status)

    app.add_middleware(EventsFastPath, accept=accept_event)  # inside BodyGuard (added last)
    app.add_middleware(
        BodyGuard,
        max_bytes=relay.max_body_bytes,
        timeout=relay.body_timeout_seconds,
        refusal_delay=relay.refusal_delay_seconds,
    )

    async def _nudge_again(row_id: int, event: InboundEvent) -> None:
        """Bitrix24 stamps events by the second and sends only IDs, so a second change within
        the same second looks exactly like a re-delivery. A repeat is recorded once; the
        deal's workflow is signalled again only when the last signal's read of the object came
        before the end of the event's second (it may have missed that change), and then once,
        after that second: repeats meanwhile find the row pending."""
        row = await inbox.get(engine, row_id)
        if row is None or row.status != inbox.InboxStatus.FORWARDED.value:
            return
        kind = signal_marks.TASK if event.event in TASK_EVENTS else signal_marks.DEAL
        mark = forwarder.latest_mark(kind, event.entity_id)
        if mark is None:
            mark = await signal_marks.get(engine, kind, event.entity_id)
        if mark is not None and mark.read_at >= event.ts + 1:
            return  # read after the event's second ended: it saw the change
        wait = max(0.0, event.ts + 1 - time.time())
        await inbox.retry_later(engine, row_id, SAME_SECOND, timedelta(seconds=wait))
        asyncio.get_running_loop().call_later(wait + 0.05, forwarder.kick, row_id)

    @app.get("/metrics")
    async def prometheus() -> Response:
        return Response(metrics.render(), media_type=metrics.content_type)

    probe_timeout, probe_cache = relay.health_timeout_seconds, relay.health_cache_seconds

    async def database_state() -> dict[str, Any]:
        await ping(engine)
        await _writable(engine)  # a locked SQLite file or a stuck PostgreSQL still reads
        return {"inbox": await inbox.counts(engine), "cursor": await scanner.cursor()}

    async def temporal_state() -> None:
        timeout = timedelta(seconds=relay.health_timeout_seconds)
        service = forwarder.temporal_client.workflow_service
        await service.get_system_info(GetSystemInfoRequest(), timeout=timeout)

    async def portal_state() -> None:
        client = forwarder.bitrix24_client
        if client is None:
            raise RuntimeError("no Bitrix24 client configured")
        await client.call("server.time")

    probes = {
        "database": CachedProbe(database_state, timeout=probe_timeout, cache_seconds=probe_cache),
        "temporal": CachedProbe(temporal_state, timeout=probe_timeout, cache_seconds=probe_cache),
        "portal": CachedProbe(
            portal_state,
            timeout=probe_timeout,
            cache_seconds=probe_cache,
            describe=_exception_class,
        ),
    }
    app.state.health_probes = probes

    @app.get("/healthz")
    async def healthz() -> JSONResponse:
        """Cheap for anyone to call: the probes' results are cached and shared."""
        names = list(probes)
        results = await asyncio.gather(*(probes[name].result() for name in names))
        body: dict[str, Any] = {"status": "ok"}
        for name, (_, error) in zip(names, results, strict=True):
            body[name] = OK if error is None else f"error: {error}"
            if error is not None:
                body["status"] = "degraded"
        database, database_error = results[0]
        status_code = 503 if database_error is not None else 200
        if database is not None:
            body["inbox"] = database["inbox"]
        body["forwarder"] = {"last_error": forwarder.last_error}
        body["offline_queue"] = _loop_health(
            offline, mode=drainer.mode, rows_recorded=drainer.recorded_total
        )
        cursor = database["cursor"] if database is not None else None
        body["scan"] = _loop_health(scan, rows_recorded=scanner.recorded_total, cursor=cursor)
        return JSONResponse(body, status_code=status_code)

    return app


def _bitrix24_client(settings: Settings) -> Bitrix24Client:
    return Bitrix24Client(
        settings.bitrix24.webhook_url,
        rate_per_second=settings.bitrix24.rate_per_second,
        burst=settings.bitrix24.burst,
    )


def _application_client(settings: Settings) -> Bitrix24Client:
    """The local application's client (its OAuth token) for event.* methods."""
    return Bitrix24Client(
        settings.bitrix24.app_rest_base(),
        access_token=settings.bitrix24.app_access_token,
        rate_per_second=settings.bitrix24.rate_per_second,
        burst=settings.bitrix24.burst,
        coalesce=False,
    )


def _loop_health(job: Periodic | None, **extra: Any) -> dict[str, Any]:
    if job is None:
        return {"enabled": False}
    return {"enabled": True, **job.describe(), **extra}


def _peer(request: Request) -> str:
    return request.client.host if request.client else "?"


async def _writable(engine: AsyncEngine) -> None:
    """Raise (or hang, for the caller's timeout) unless the inbox takes a write: an UPDATE of
    no row, rolled back, which still needs SQLite's write lock."""
    async with engine.connect() as conn:
        await conn.execute(_NO_WRITE)
        await conn.rollback()


_NO_WRITE = text("UPDATE inbox_event SET status = status WHERE id = -1")


def _event_name(fields: dict[str, bytes]) -> str:
    return fields.get(EVENT_KEY, b"").decode("utf-8", errors="replace")


def _exception_class(exc: BaseException) -> str:
    """The portal's errors may carry the webhook URL (its secret): only the class is shown."""
    return type(exc).__name__


class _RefusalLog:
    """Refused POSTs logged once per REFUSAL_LOG_SECONDS (a flood does not fill the disk)."""

    def __init__(self) -> None:
        self._since = 0
        self._last = float("-inf")

    def note(self, peer: str, why: str) -> None:
        now = time.monotonic()
        if now - self._last < REFUSAL_LOG_SECONDS:
            self._since += 1
            return
        more = f" ({self._since} more refused since the last line)" if self._since else ""
        log.warning("refused event from %s: %s%s", peer, why, more)
        self._last, self._since = now, 0
