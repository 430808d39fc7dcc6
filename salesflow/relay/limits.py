"""What one connection or request may cost the relay before it is refused.

- `BodyGuard` (ASGI middleware): a body over `max_bytes` gets 413 as soon as the limit is passed
  (at once when `Content-Length` says so), never read whole; a body not complete within
  `timeout` seconds gets 408. The app then sees the whole body in one message. Refusals are
  answered after `refusal_delay` seconds (nothing more is read meanwhile): a client flooding
  over N connections gets at most N/delay answers a second, and the relay's loop stays free.
- `guarded_h11`: uvicorn's h11 protocol with a deadline for the request head: a connection that
  has sent no complete request line and headers this long after it opened, or after its last
  response, is closed (uvicorn's keep-alive timer is cancelled by any byte received, so a
  half-open or trickling client would otherwise hold its connection for ever).
Header size (h11's max incomplete event size), connections plus requests in progress
(`limit_concurrency`) and idle keep-alive are uvicorn's own settings (`server.uvicorn_config`).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol

Scope = dict[str, Any]
Message = dict[str, Any]


class BodyGuard:
    def __init__(
        self, app: Any, *, max_bytes: int, timeout: float, refusal_delay: float = 0.0
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.timeout = timeout
        self.refusal_delay = refusal_delay

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        if declared is not None and (not declared.isdigit() or len(declared) > 18):
            await self._refuse(send, 400, "bad Content-Length")
            return
        if declared is not None and int(declared) > self.max_bytes:
            await self._refuse(send, 413, f"body over {self.max_bytes} bytes")
            return
        if declared is None and b"transfer-encoding" not in headers:
            await self.app(scope, receive, send)  # no body (GET, HEAD, …)
            return
        chunks: list[bytes] = []
        size = 0
        try:
            async with asyncio.timeout(self.timeout):
                while True:
                    message = await receive()
                    if message["type"] == "http.disconnect":
                        return
                    chunk = message.get("body", b"")
                    size += len(chunk)
                    if size > self.max_bytes:
                        await self._refuse(send, 413, f"body over {self.max_bytes} bytes")
                        return
                    chunks.append(chunk)
                    if not message.get("more_body", False):
                        break
        except TimeoutError:
            await self._refuse(send, 408, f"body not complete within {self.timeout:g} s")
            return
        body = b"".join(chunks)
        delivered = False

        async def replay() -> Message:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            return dict(await receive())  # the disconnect, when it comes

        await self.app(scope, replay, send)

    async def _refuse(self, send: Any, status: int, detail: str) -> None:
        if self.refusal_delay:
            await asyncio.sleep(self.refusal_delay)
        await _reply(send, status, detail)


async def _reply(send: Any, status: int, detail: str) -> None:
    """A JSON error; the connection is closed after it (the rest of the body is never read)."""
    payload = json.dumps({"detail": detail}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})


class _GuardedH11Protocol(H11Protocol):
    head_timeout: float = 10.0
    _head_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_head_timer()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
        super().connection_lost(exc)

    def _arm_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
        self._head_timer = self.loop.call_later(self.head_timeout, self._head_timed_out)

    def _head_timed_out(self) -> None:
        self._head_timer = None
        in_progress = self.cycle is not None and not self.cycle.response_complete
        if not in_progress and not self.transport.is_closing():
            self.transport.close()  # no request head in time (BodyGuard bounds the body)


def guarded_h11(head_timeout: float) -> type[H11Protocol]:
    """uvicorn's h11 protocol whose connections must send a request head within the timeout."""
    return type("GuardedH11Protocol", (_GuardedH11Protocol,), {"head_timeout": head_timeout})
