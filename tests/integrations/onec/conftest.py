"""A fresh emulated 1C base on an ephemeral port per test, and a client bound to it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest
from fastapi import FastAPI

from emulators.asgi_server import serve
from emulators.onec.app import create_app
from emulators.onec.state import OneCBase
from salesflow.integrations.onec.client import OneCClient

USER = "odata"
PASSWORD = "odata"


@dataclass
class Emulator:
    app: FastAPI
    url: str  # http://127.0.0.1:port
    root: str  # the OData root

    @property
    def base(self) -> OneCBase:
        return self.app.state.base

    def client(
        self,
        *,
        user: str = USER,
        password: str = PASSWORD,
        timeout: float = 5.0,
        reuse_session: bool = True,
    ) -> OneCClient:
        return OneCClient(self.root, user, password, timeout=timeout, reuse_session=reuse_session)

    def raw(self) -> httpx.AsyncClient:
        """Plain HTTP with the right credentials, for checking 1C's wire shapes."""
        return httpx.AsyncClient(base_url=self.root, auth=(USER, PASSWORD), timeout=5.0)


@pytest.fixture
async def emulator() -> AsyncIterator[Emulator]:
    app = create_app("trade", USER, PASSWORD)
    async with serve(app) as server:
        yield Emulator(app, server.url, f"{server.url}/trade/odata/standard.odata/")


@pytest.fixture
async def onec(emulator: Emulator) -> AsyncIterator[OneCClient]:
    async with emulator.client() as client:
        yield client
