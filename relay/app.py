"""The relay's web app: Bitrix24 outbound events in, recorded durably, forwarded to Temporal."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import Client

from config.settings import Settings
from integrations.bitrix24.client import Bitrix24Client
from relay.forwarder import Bitrix24Caller, Forwarder, ForwarderOptions
from relay.intake import (
    FORM_CONTENT_TYPE,
    BadEvent,
    Unauthorized,
    check_token,
    decode_form,
    parse_event,
)
from store import inbox
from store.db import init_db, ping

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
) -> FastAPI:
    """The relay. Without `bitrix24_client` one is built from `settings.bitrix24` at start-up.

    The engine and the Temporal client belong to the caller; the app creates the inbox table
    if needed, runs the retry loop while it lives and closes only what it built itself.
    """
    forwarder = Forwarder(settings, engine, temporal_client, bitrix24_client, forwarder_options)
    token = settings.bitrix24.application_token

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await init_db(engine)
        async with contextlib.AsyncExitStack() as stack:
            if bitrix24_client is None:
                forwarder.bitrix24_client = await stack.enter_async_context(
                    _bitrix24_client(settings)
                )
            loop = asyncio.create_task(forwarder.run(), name="relay-forwarder")
            try:
                yield
            finally:
                loop.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await loop
                await forwarder.close()
                if bitrix24_client is None:
                    forwarder.bitrix24_client = None

    app = FastAPI(title="salesflow relay", lifespan=lifespan)
    app.state.forwarder = forwarder
    app.state.engine = engine

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
            return _error(401, "wrong or missing auth[application_token]")
        except BadEvent as exc:
            return _error(400, str(exc))
        try:
            row_id, is_new = await inbox.record(
                engine,
                event=event.event,
                entity_id=event.entity_id,
                ts=event.ts,
                payload=event.payload,
            )
        except Exception:
            log.exception("could not record %s %s", event.event, event.entity_id)
            return _error(503, "the inbox is unavailable; the event was not recorded")
        if is_new:
            forwarder.kick(row_id)
        return JSONResponse({"status": "recorded" if is_new else "duplicate", "id": row_id})

    @app.get("/healthz")
    async def healthz() -> JSONResponse:
        body: dict[str, Any] = {"status": "ok", "database": "ok"}
        status_code = 200
        try:
            await ping(engine)
            body["inbox"] = await inbox.counts(engine)
        except Exception as exc:
            body.update(status="degraded", database=f"error: {type(exc).__name__}: {exc}")
            status_code = 503
        body["forwarder"] = {"last_error": forwarder.last_error}
        return JSONResponse(body, status_code=status_code)

    return app


def _bitrix24_client(settings: Settings) -> Bitrix24Client:
    return Bitrix24Client(
        settings.bitrix24.webhook_url,
        rate_per_second=settings.bitrix24.rate_per_second,
        burst=settings.bitrix24.burst,
    )


def _peer(request: Request) -> str:
    return request.client.host if request.client else "?"
