"""An HTTP proxy (ASGI, served on an ephemeral port) that delivers create calls to the system
behind it only after the client gave up: the portal that finishes a call late (issue 11).

Reads pass at once. The first create of each kind (`creates(method, path, body)`) is held
`delay` seconds and then forwarded, whatever the client did meanwhile (it has closed the
connection by then) — or, with `lose_first`, never forwarded (a call the portal lost). Later
creates of the kind pass at once: the portal was slow for a while. `forwarded` counts the
creates that reached the system per kind, `arrivals` when each came.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections import Counter
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote

import httpx

BITRIX24_CREATES = (
    "tasks.task.add",
    "crm.activity.add",
    "crm.item.add",
    "crm.deal.add",
    "crm.timeline.comment.add",
    "im.notify.system.add",
    "crm.deal.productrows.set",
    "task.commentitem.add",
)
_HOP = {"host", "content-length", "transfer-encoding", "connection", "content-encoding"}


def bitrix24_creates(method: str, path: str, body: bytes) -> list[str]:
    """The create methods a REST request carries (itself, or the commands of its batch)."""
    name = path.rstrip("/").rsplit("/", 1)[-1].removesuffix(".json").lower()
    if name == "batch":
        text = unquote(body.decode("utf-8", "replace"))
        return [m for m in BITRIX24_CREATES for _ in re.finditer(re.escape(m) + r"\?", text)]
    return [name] if name in BITRIX24_CREATES else []


def onec_creates(method: str, path: str, body: bytes) -> list[str]:
    """A POST that makes a 1C object (Task_…, Document_…, Catalog_…)."""
    if method != "POST":
        return []
    entity = unquote(path).rstrip("/").rsplit("/", 1)[-1]
    return [entity] if re.match(r"^(Task|Document|Catalog)_[^(]+$", entity) else []


class LateProxy:
    def __init__(
        self,
        target: str,
        creates: Callable[[str, str, bytes], list[str]],
        *,
        delay: float = 0.0,
        lose_first: bool = False,
    ) -> None:
        self.target = target
        self.creates = creates
        self.delay = delay
        self.lose_first = lose_first
        self.forwarded: Counter[str] = Counter()
        self.held: Counter[str] = Counter()
        self.arrivals: dict[str, list[float]] = {}  # kind → when each create came (monotonic)
        self._http = httpx.AsyncClient(base_url=target, timeout=30)
        self._tasks: set[asyncio.Task[httpx.Response | None]] = set()

    async def drain(self) -> None:
        """Wait until every held create has reached the system."""
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def aclose(self) -> None:
        await self.drain()
        await self._http.aclose()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                await send({"type": message["type"] + ".complete"})
                if message["type"] == "lifespan.shutdown":
                    return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        method, path = scope["method"], scope["path"]
        url = scope["raw_path"].decode() + (
            "?" + scope["query_string"].decode() if scope["query_string"] else ""
        )
        headers = {
            k.decode(): v.decode() for k, v in scope["headers"] if k.decode().lower() not in _HOP
        }
        kinds = self.creates(method, path, body)

        async def forward() -> httpx.Response | None:
            if kinds:
                for kind in kinds:
                    self.arrivals.setdefault(kind, []).append(time.monotonic())
                first = any(self.held[kind] == 0 for kind in kinds)
                self.held.update(kinds)
                if first and self.lose_first:
                    return None
                if first:
                    await asyncio.sleep(self.delay)
                self.forwarded.update(kinds)
            return await self._http.request(method, url, content=body, headers=headers)

        task = asyncio.get_running_loop().create_task(forward())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        response = await asyncio.shield(task)
        if response is None:  # lost: the client hears nothing until it gives up
            while (await receive())["type"] != "http.disconnect":
                pass
            return
        answer = [(k.encode(), v.encode()) for k, v in response.headers.multi_items()]
        await send(
            {
                "type": "http.response.start",
                "status": response.status_code,
                "headers": [(k, v) for k, v in answer if k.decode().lower() not in _HOP],
            }
        )
        await send({"type": "http.response.body", "body": response.content})
