"""The relay's web app: Bitrix24 outbound events in, recorded durably, forwarded to Temporal."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import Client

from salesflow.config.settings import Settings
from salesflow.deal_card.app import deal_card_router
from salesflow.integrations.bitrix24.client import Bitrix24Client
from salesflow.relay.forwarder import Bitrix24Caller, Forwarder, ForwarderOptions
from salesflow.relay.intake import (
    FORM_CONTENT_TYPE,
    BadEvent,
    Unauthorized,
    check_token,
    decode_form,
    parse_event,
)
from salesflow.relay.metrics import RelayMetrics
from salesflow.relay.offline import OfflineDrainer
from salesflow.relay.periodic import Periodic
from salesflow.relay.recorder import Recorder
from salesflow.relay.scan import DealScanner
from salesflow.store import inbox
from salesflow.store.db import init_db, ping
from salesflow.workflows.names import UPDATE_EVENTS

log = logging.getLogger("salesflow.relay")

MAX_BODY_BYTES = 1_000_000
EVENTS_PATH = "/bitrix24/events"


def _error(status: int, detail: str) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status)


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
                await recorder.close()
                await forwarder.close()
                if bitrix24_client is None:
                    forwarder.bitrix24_client = None
                drainer.client = offline_client

    app = FastAPI(title="salesflow relay", lifespan=lifespan)
    if settings.deal_card.enabled:  # the deal card's tab shares the public port (issue 12)
        app.include_router(deal_card_router(settings, temporal_client))
    app.state.forwarder = forwarder
    app.state.engine = engine
    app.state.offline = offline  # Periodic | None: `await app.state.offline.run_once()`
    app.state.scan = scan
    app.state.drainer = drainer
    app.state.scanner = scanner
    metrics = RelayMetrics()
    app.state.metrics = metrics
    forwarder.observer = metrics.settled_row

    @app.post(EVENTS_PATH)
    async def bitrix24_event(request: Request) -> JSONResponse:
        content_type = request.headers.get("content-type", FORM_CONTENT_TYPE)
        if not content_type.lower().startswith(FORM_CONTENT_TYPE):
            return _error(415, f"expected {FORM_CONTENT_TYPE}")
        body = await request.body()
        if len(body) > MAX_BODY_BYTES:
            return _error(413, f"body over {MAX_BODY_BYTES} bytes")
        try:
            form = decode_form(body)
            check_token(form, token)
            event = parse_event(form)
        except Unauthorized as exc:
            log.warning("refused event from %s: %s", _peer(request), exc)
            metrics.received_event(str(form.get("event", "")), "rejected")
            return _error(401, "wrong or missing auth[application_token]")
        except BadEvent as exc:
            metrics.received_event("", "bad")
            return _error(400, str(exc))
        try:
            recorded = await recorder.record(
                inbox.NewEvent(event.event, event.entity_id, event.ts, event.payload)
            )
        except Exception:
            log.exception("could not record %s %s", event.event, event.entity_id)
            metrics.received_event(event.event, "unavailable")
            return _error(503, "the inbox is unavailable; the event was not recorded")
        row_id, is_new = recorded.id, recorded.is_new
        metrics.received_event(event.event, "recorded" if is_new else "duplicate")
        if not is_new and event.event in UPDATE_EVENTS:
            await _nudge_again(row_id)
        return JSONResponse({"status": "recorded" if is_new else "duplicate", "id": row_id})

    async def _nudge_again(row_id: int) -> None:
        """Bitrix24 stamps events by the second and sends only IDs, so a second change within
        the same second looks exactly like a re-delivery. It is recorded once, but the deal's
        workflow is signalled again: it re-reads the deal, which costs one read at most."""
        row = await inbox.get(engine, row_id)
        if row is not None and row.status == inbox.InboxStatus.FORWARDED.value:
            await inbox.mark(engine, row_id, inbox.InboxStatus.PENDING, "same-second change")
            forwarder.kick(row_id)

    @app.get("/metrics")
    async def prometheus() -> Response:
        return Response(metrics.render(), media_type=metrics.content_type)

    @app.get("/healthz")
    async def healthz() -> JSONResponse:
        body: dict[str, Any] = {"status": "ok", "database": "ok"}
        status_code = 200
        cursor = None
        try:
            await ping(engine)
            body["inbox"] = await inbox.counts(engine)
            cursor = await scanner.cursor()
        except Exception as exc:
            body.update(status="degraded", database=f"error: {type(exc).__name__}: {exc}")
            status_code = 503
        body["forwarder"] = {"last_error": forwarder.last_error}
        body["offline_queue"] = _loop_health(
            offline, mode=drainer.mode, rows_recorded=drainer.recorded_total
        )
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
