"""POST /bitrix24/events answered as plain ASGI, before FastAPI's routing.

The relay's busiest endpoint needs none of FastAPI's per-request machinery (routing, a
`Request`, dependency solving, a `JSONResponse`): this middleware, placed inside `BodyGuard`
(which has bounded the body's size and time and hands it over in one message), calls the same
handler the documented FastAPI route calls and writes its JSON answer itself. Every other path
and method goes on to the app.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from salesflow.relay.intake import FORM_CONTENT_TYPE

Accept = Callable[[str, bytes, str], Awaitable[tuple[int, dict[str, Any]]]]

EVENTS_PATH = "/bitrix24/events"
_JSON = (b"content-type", b"application/json")


class EventsFastPath:
    def __init__(self, app: Any, *, accept: Accept) -> None:
        self.app = app
        self.accept = accept  # (content type, body, peer) -> (status, answer)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if (
            scope["type"] != "http"
            or scope["path"] != EVENTS_PATH
            or scope["method"] != "POST"
            or scope.get("root_path")  # mounted elsewhere: FastAPI's routing decides
        ):
            await self.app(scope, receive, send)
            return
        content_type = FORM_CONTENT_TYPE
        for name, value in scope["headers"]:
            if name == b"content-type":
                content_type = value.decode("latin-1")
        body = b""
        while True:  # one message after BodyGuard; more only if used without it
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            if not message.get("more_body", False):
                break
        client = scope.get("client")
        status, answer = await self.accept(content_type, body, client[0] if client else "?")
        # As Starlette's JSONResponse renders it.
        payload = json.dumps(
            answer, ensure_ascii=False, allow_nan=False, indent=None, separators=(",", ":")
        ).encode("utf-8")
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-length", str(len(payload)).encode()), _JSON],
            }
        )
        await send({"type": "http.response.body", "body": payload})
