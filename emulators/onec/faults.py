"""ASGI middleware that injects the configured faults (`OneCBase.faults`) into OData calls:
a cold first call, latency, a base that is down (HTML 502/503 from the web server, or a
dropped connection) and bursts of 5xx. Admin endpoints are never affected."""

from __future__ import annotations

import asyncio
import json
from typing import Any

Scope = dict[str, Any]

LOCK_CONFLICT = (
    "Конфликт блокировок при выполнении транзакции:\n"
    "Превышено максимальное время ожидания предоставления блокировки"
)


class FaultInjector:
    def __init__(self, app: Any, prefix: str) -> None:
        self.app = app
        self.prefix = prefix

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(self.prefix):
            await self.app(scope, receive, send)
            return
        faults = scope["app"].state.base.faults
        delay, faults.slow_first_call = faults.slow_first_call, 0.0
        if delay + faults.latency > 0:
            await asyncio.sleep(delay + faults.latency)
        if faults.down == "reset":
            await _drop(send)
            return
        if faults.down in ("502", "503"):
            await _html(send, int(faults.down))
            return
        if faults.error_burst > 0:
            faults.error_burst -= 1
            status = int(faults.error_status)
            if status == 500:
                await _odata_error(send, status, "-1", LOCK_CONFLICT)
            else:
                await _html(send, status)
            return
        await self.app(scope, receive, send)


async def _drop(send: Any) -> None:
    """Start an answer and abandon it: the server closes the connection mid-body."""
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/json"), (b"content-length", b"100")],
        }
    )
    await send({"type": "http.response.body", "body": b'{"odata.metadata":', "more_body": True})


async def _html(send: Any, status: int) -> None:
    title = {
        502: "502 Bad Gateway",
        503: "503 Service Unavailable",
        504: "504 Gateway Timeout",
    }.get(status, f"{status} Error")
    body = f"<html><head><title>{title}</title></head><body><h1>{title}</h1></body></html>"
    await _send(send, status, b"text/html; charset=utf-8", body.encode())


async def _odata_error(send: Any, status: int, code: str, message: str) -> None:
    body = json.dumps(
        {"odata.error": {"code": code, "message": {"lang": "ru", "value": message}}},
        ensure_ascii=False,
    )
    await _send(send, status, b"application/json;charset=utf-8", body.encode())


async def _send(send: Any, status: int, content_type: bytes, body: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", content_type),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
