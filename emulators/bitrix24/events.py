"""Outbound events: form-encoded POSTs after the response, at most once, never retried.

Each event is due `portal.event_delay` seconds after the call plus a random extra up to
`portal.event_jitter` (so events may overtake each other), and is dropped with probability
`portal.event_drop_rate`; the randomness comes from the portal's seeded `event_rng`. With no
jitter, events go out one by one in the order raised. Every attempt (and every drop) is
recorded in `portal.deliveries`.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import logging
from dataclasses import dataclass, field
from typing import Any

import httpx

from emulators.bitrix24.registry import PendingEvent
from emulators.bitrix24.state import Delivery, Portal
from salesflow.integrations.bitrix24 import php_form

SERVER_ENDPOINT = "https://oauth.bitrix.info/rest/"
TOKEN_LIFETIME = 3600
# Events whose app-handler body also carries the refresh token.
_REFRESH_EVENTS = {"ONAPPINSTALL", "ONAPPUPDATE", "ONAPPTEST", "ONOFFLINEEVENT"}
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Origin:
    """Where the change happened, for the `auth[...]` block of the event."""

    host: str
    scheme: str = "http"


def _app_auth(portal: Portal, event: PendingEvent, domain: str, endpoint: str) -> dict[str, Any]:
    app = portal.apps.get(event.app_id or "")
    if app is None:
        return {"domain": domain, "member_id": portal.member_id}
    auth: dict[str, Any] = {
        "access_token": app.access_token,
        "expires_in": TOKEN_LIFETIME,
        "scope": ",".join(sorted(app.scopes)),
        "domain": domain,
        "server_endpoint": SERVER_ENDPOINT,
        "status": "L",
        "client_endpoint": endpoint,
        "member_id": portal.member_id,
        "user_id": app.user_id,
    }
    if event.name in _REFRESH_EVENTS:
        auth["refresh_token"] = app.refresh_token
    auth["application_token"] = app.application_token
    return auth


def event_body(portal: Portal, event: PendingEvent, origin: Origin, ts: int) -> str:
    """The body exactly as the portal sends it (PHP http_build_query form).

    Outgoing webhooks get only domain/endpoints/member_id/application_token; handlers bound
    by an application (`event.bind`) get the app's OAuth block as well.
    """
    domain = portal.domain or origin.host
    endpoint = f"{origin.scheme}://{domain}/rest/"
    if event.app_id is not None:
        auth = _app_auth(portal, event, domain, endpoint)
    else:
        auth = {
            "domain": domain,
            "client_endpoint": endpoint,
            "server_endpoint": SERVER_ENDPOINT,
            "member_id": portal.member_id,
            "application_token": portal.application_token,
        }
    handler_id = event.handler_id or portal.event_handler_ids.get(event.name, 0)
    return php_form.encode(
        {
            "event": event.name,
            "event_handler_id": handler_id,
            "data": event.data,
            "ts": ts,
            "auth": auth,
        }
    )


@dataclass(order=True)
class _Scheduled:
    due: float
    seq: int
    event: PendingEvent = field(compare=False)
    origin: Origin = field(compare=False)
    ts: int = field(compare=False)


class EventDispatcher:
    """Delivers queued events when due, one at a time, from a background task."""

    def __init__(self, portal: Portal, *, timeout: float = 10.0) -> None:
        self.portal = portal
        self.timeout = timeout
        self._loop: asyncio.AbstractEventLoop | None = None
        self._heap: list[_Scheduled] = []
        self._seq = itertools.count()
        self._wake: asyncio.Event | None = None
        self._idle: asyncio.Event | None = None
        self._worker: asyncio.Task[None] | None = None
        self._client: httpx.AsyncClient | None = None

    def _ensure_worker(self) -> None:
        loop = asyncio.get_running_loop()
        if self._loop is not loop or self._worker is None:
            self._loop = loop
            self._heap = []
            self._wake = asyncio.Event()
            self._idle = asyncio.Event()
            self._idle.set()
            self._client = httpx.AsyncClient(timeout=self.timeout)
            self._worker = loop.create_task(self._run())

    def _target(self, event: PendingEvent) -> str | None:
        return event.handler if event.handler is not None else self.portal.handler_url

    async def enqueue(self, events: list[PendingEvent], origin: Origin) -> None:
        """Schedule events raised by one call (a no-op for events without a handler URL)."""
        if not events:
            return
        self._ensure_worker()
        assert self._loop is not None and self._wake is not None and self._idle is not None
        portal = self.portal
        now = self._loop.time()
        for event in events:
            ts = int(portal.now())
            if portal.event_drop_rate > 0 and portal.event_rng.random() < portal.event_drop_rate:
                self._record_drop(event, ts)
                continue
            jitter = portal.event_rng.random() * portal.event_jitter if portal.event_jitter else 0
            due = now + portal.event_delay + jitter
            heapq.heappush(self._heap, _Scheduled(due, next(self._seq), event, origin, ts))
        if self._heap:
            self._idle.clear()
            self._wake.set()

    def _record_drop(self, event: PendingEvent, ts: int) -> None:
        url = self._target(event)
        if url:
            self.portal.deliveries.append(
                Delivery(event.name, event.entity_id, url, "", ts, error="dropped")
            )

    async def _run(self) -> None:
        assert self._loop is not None and self._wake is not None and self._idle is not None
        while True:
            if not self._heap:
                self._idle.set()
                self._wake.clear()
                await self._wake.wait()
                continue
            wait = self._heap[0].due - self._loop.time()
            if wait > 0:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), wait)
                continue
            item = heapq.heappop(self._heap)
            try:
                await self._deliver(item.event, item.origin, item.ts)
            except Exception:  # a broken delivery must not stop the ones after it
                log.exception("delivering %s failed", item.event.name)

    async def _deliver(self, event: PendingEvent, origin: Origin, ts: int) -> None:
        url = self._target(event)
        if not url or self._client is None:
            return
        body = event_body(self.portal, event, origin, ts)
        delivery = Delivery(event=event.name, entity_id=event.entity_id, url=url, body=body, ts=ts)
        try:
            response = await self._client.post(
                url,
                content=body.encode(),
                headers={
                    "Content-Type": "application/x-www-form-urlencoded",
                    "User-Agent": "Bitrix24 Webhook Engine",
                },
            )
            delivery.status = response.status_code
        except httpx.HTTPError as exc:
            delivery.error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        self.portal.deliveries.append(delivery)

    async def drain(self) -> None:
        """Wait until every scheduled event has been attempted."""
        if self._idle is not None and self._loop is asyncio.get_running_loop():
            await self._idle.wait()

    async def aclose(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError, RuntimeError):
                await self._worker
        if self._client is not None:
            with contextlib.suppress(RuntimeError):
                await self._client.aclose()
        self._worker = self._client = self._loop = None
        self._heap = []

    def describe(self) -> dict[str, Any]:
        return {"pending": len(self._heap), "delivered": len(self.portal.deliveries)}
