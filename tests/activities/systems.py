"""Both emulators on ephemeral ports (real HTTP) and the 1C activities bound to them.

Shared by the activity tests and the `LogistTaskMirror` dev-server test.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
from fastapi import FastAPI

from emulators.asgi_server import serve
from emulators.bitrix24.app import create_app as create_bitrix24
from emulators.bitrix24.state import Portal
from emulators.onec.app import create_app as create_onec
from emulators.onec.state import OneCBase
from salesflow.activities.onec import OneCActivities
from salesflow.config.settings import Settings
from salesflow.integrations.bitrix24.client import Bitrix24Client
from salesflow.integrations.onec.client import OneCClient

SECRET = "devsecret"


@dataclass
class Systems:
    """The two emulated systems, the clients the worker would hold, and its activities."""

    onec_app: FastAPI
    onec_url: str
    bitrix24_app: FastAPI
    settings: Settings
    onec: OneCClient
    bitrix24: Bitrix24Client
    activities: OneCActivities

    @property
    def base(self) -> OneCBase:
        return self.onec_app.state.base

    @property
    def portal(self) -> Portal:
        return self.bitrix24_app.state.portal

    async def admin(self, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        """A person working in 1C (the emulator's admin endpoints)."""
        async with httpx.AsyncClient(base_url=self.onec_url, timeout=5) as http:
            response = await http.post(f"/_emulator{path}", json=body or {})
        assert response.status_code == 200, response.text
        return response.json()

    async def new_deal(self, **fields: Any) -> int:
        base = {"TITLE": "Насосная станция", "CATEGORY_ID": 1}
        return int(await self.bitrix24.call("crm.deal.add", {"fields": {**base, **fields}}))

    async def new_task(self, deal_id: int, title: str = "Отгрузить товар клиенту") -> int:
        created = await self.bitrix24.call(
            "tasks.task.add",
            {
                "fields": {
                    "TITLE": title,
                    "RESPONSIBLE_ID": 5,
                    "CREATED_BY": 3,
                    "UF_CRM_TASK": [f"D_{deal_id}"],
                }
            },
        )
        return int(created["task"]["id"])


def settings_for(onec_root: str, webhook: str, **onec: Any) -> Settings:
    return Settings.model_validate(
        {"onec": {"odata_url": onec_root, **onec}, "bitrix24": {"webhook_url": webhook}}
    )


@asynccontextmanager
async def running_systems(
    profile: str = "ut11", extension: bool = False, **onec_settings: Any
) -> AsyncIterator[Systems]:
    """Fresh emulators of 1C (a standard `profile` base) and Bitrix24 (rate limit off) and the
    activities bound to them; `onec_settings` go to the `[onec]` settings."""
    onec_app = create_onec(profile=profile, extension=extension)
    bitrix24_app = create_bitrix24(secret=SECRET, rate_per_second=None)
    async with serve(onec_app) as onec_server, serve(bitrix24_app) as b24_server:
        settings = settings_for(
            f"{onec_server.url}/trade/odata/standard.odata/",
            f"{b24_server.url}/rest/1/{SECRET}/",
            profile=profile,
            extension=extension,
            **onec_settings,
        )
        conf = settings.onec
        async with (
            OneCClient(conf.odata_url, conf.user, conf.password, timeout=5) as onec,
            Bitrix24Client(settings.bitrix24.webhook_url, rate_per_second=0) as bitrix24,
        ):
            yield Systems(
                onec_app=onec_app,
                onec_url=onec_server.url,
                bitrix24_app=bitrix24_app,
                settings=settings,
                onec=onec,
                bitrix24=bitrix24,
                activities=OneCActivities(onec, bitrix24, settings),
            )
