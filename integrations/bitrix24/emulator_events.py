"""Outbound events: form-encoded POSTs to the handler URL, after the response, never retried."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from typing import Any

import httpx

from integrations.bitrix24 import php_form
from integrations.bitrix24.emulator_registry import PendingEvent
from integrations.bitrix24.emulator_state import Delivery, Portal

SERVER_ENDPOINT = "https://oauth.bitrix.info/rest/"
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Origin:
    """Where the change happened, for the `auth[...]` block of the event."""

    host: str
    scheme: str = "http"


def event_body(portal: Portal, event: PendingEvent, origin: Origin, ts: int) -> str:
    """The body exactly as an outgoing webhook sends it (PHP http_build_query form)."""
    domain = portal.domain or origin.host
    return php_form.encode(
        {
            "event": event.name,
            "event_handler_id": portal.event_handler_ids.get(event.name, 0),
            "data": event.data,
            "ts": ts,
            "auth": {
                "domain": domain,
                "client_endpoint": f"{origin.scheme}://{domain}/rest/",
                "server_endpoint": SERVER_ENDPOINT,
                "member_id": portal.member_id,
                "application_token": portal.application_token,
            },
        }
    )


class EventDispatcher:
    """Delivers events one by one in the order raised, from a background task."""

    def __init__(self, portal: Portal, *, timeout: float = 10.0) -> None:
        self.portal = portal
        self.timeout = timeout
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queue: asyncio.Queue[tuple[PendingEvent, Origin, int]] | None = None
        self._worker: asyncio.Task[None] | None = None
        self._client: httpx.AsyncClient | None = None

    def _ensure_worker(self) -> asyncio.Queue[tuple[PendingEvent, Origin, int]]:
        loop = asyncio.get_running_loop()
        if self._loop is not loop or self._queue is None or self._worker is None:
            self._loop = loop
            self._queue = asyncio.Queue()
            self._client = httpx.AsyncClient(timeout=self.timeout)
            self._worker = loop.create_task(self._run(self._queue, self._client))
        return self._queue

    async def enqueue(self, events: list[PendingEvent], origin: Origin) -> None:
        """Queue events raised by one call (a no-op without a handler URL)."""
        if not events:
            return
        queue = self._ensure_worker()
        for event in events:
            queue.put_nowait((event, origin, int(self.portal.now())))

    async def _run(
        self,
        queue: asyncio.Queue[tuple[PendingEvent, Origin, int]],
        client: httpx.AsyncClient,
    ) -> None:
        while True:
            event, origin, ts = await queue.get()
            try:
                if self.portal.event_delay > 0:
                    await asyncio.sleep(self.portal.event_delay)
                await self._deliver(client, event, origin, ts)
            except Exception:  # a broken delivery must not stop the ones after it
                log.exception("delivering %s failed", event.name)
            finally:
                queue.task_done()

    async def _deliver(
        self, client: httpx.AsyncClient, event: PendingEvent, origin: Origin, ts: int
    ) -> None:
        url = self.portal.handler_url
        if not url:
            return
        body = event_body(self.portal, event, origin, ts)
        delivery = Delivery(event=event.name, entity_id=event.entity_id, url=url, body=body, ts=ts)
        try:
            response = await client.post(
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
        """Wait until every queued event has been attempted."""
        if self._queue is not None and self._loop is asyncio.get_running_loop():
            await self._queue.join()

    async def aclose(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError, RuntimeError):
                await self._worker
        if self._client is not None:
            with contextlib.suppress(RuntimeError):
                await self._client.aclose()
        self._worker = self._client = self._queue = self._loop = None

    def describe(self) -> dict[str, Any]:
        pending = self._queue.qsize() if self._queue is not None else 0
        return {"pending": pending, "delivered": len(self.portal.deliveries)}
