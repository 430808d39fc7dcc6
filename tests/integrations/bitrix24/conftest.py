"""Fixtures for the Bitrix24 client and emulator tests: real servers on ephemeral ports."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from emulators.asgi_server import BackgroundServer, serve
from emulators.bitrix24.app import create_app
from emulators.bitrix24.seed import LOCAL_APP_ACCESS_TOKEN
from emulators.bitrix24.state import Portal

SECRET = "devsecret"
APP_TOKEN = LOCAL_APP_ACCESS_TOKEN


@dataclass
class Emulator:
    app: FastAPI
    server: BackgroundServer

    @property
    def portal(self) -> Portal:
        return self.app.state.portal

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def webhook(self) -> str:
        return f"{self.server.url}/rest/1/{SECRET}/"

    @property
    def oauth(self) -> str:
        """The local application's REST endpoint (`/rest/<method>?auth=<token>`)."""
        return f"{self.server.url}/rest/"

    async def drain_events(self) -> None:
        await self.app.state.events.drain()


StartEmulator = Callable[..., Awaitable[Emulator]]


@pytest.fixture
async def start_emulator() -> AsyncIterator[StartEmulator]:
    """Start emulators (rate limit off unless asked for); all stop when the test ends."""
    async with contextlib.AsyncExitStack() as stack:

        async def start(**kwargs: Any) -> Emulator:
            kwargs.setdefault("rate_per_second", None)
            app = create_app(secret=SECRET, **kwargs)
            server = await stack.enter_async_context(serve(app))
            return Emulator(app, server)

        yield start


@pytest.fixture
async def emu(start_emulator: StartEmulator) -> Emulator:
    return await start_emulator()


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=10) as client:
        yield client


@dataclass
class Receiver:
    """A tiny ASGI app standing in for the relay: records every POST it gets."""

    status: int = 200
    requests: list[dict[str, Any]] = field(default_factory=list)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        self.requests.append({"path": scope["path"], "headers": headers, "body": body.decode()})
        await send({"type": "http.response.start", "status": self.status, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    async def wait_for(self, count: int, timeout: float = 5.0) -> None:
        async with asyncio.timeout(timeout):
            while len(self.requests) < count:
                await asyncio.sleep(0.01)


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[Receiver, str]]:
    app = Receiver()
    async with serve(app) as server:
        yield app, f"{server.url}/bitrix24/events"


Rest = Callable[..., Awaitable[tuple[int, Any]]]


@pytest.fixture
def rest(emu: Emulator, http: httpx.AsyncClient) -> Rest:
    """POST a JSON call to the default emulator; returns (status, decoded body)."""

    async def call(
        method: str,
        params: dict[str, Any] | list[Any] | None = None,
        *,
        secret: str = SECRET,
        user: int = 1,
    ) -> tuple[int, Any]:
        response = await http.post(f"{emu.url}/rest/{user}/{secret}/{method}", json=params or {})
        return response.status_code, response.json()

    return call


@pytest.fixture
def app_rest(emu: Emulator, http: httpx.AsyncClient) -> Rest:
    """POST a JSON call as the local application (OAuth route, `auth=` token)."""

    async def call(
        method: str,
        params: dict[str, Any] | None = None,
        *,
        token: str = APP_TOKEN,
    ) -> tuple[int, Any]:
        response = await http.post(
            f"{emu.oauth}{method}", params={"auth": token}, json=params or {}
        )
        return response.status_code, response.json()

    return call
