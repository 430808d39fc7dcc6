"""The deal card over real HTTP: the Bitrix24 emulator (with the tab bound), the card's app and
a deal's workflow on the shared Temporal dev server (activities: the workflow tests' doubles)."""

from __future__ import annotations

import contextlib
import random
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from html.parser import HTMLParser
from typing import Any

import httpx
import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowHandle
from temporalio.converter import DataConverter
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from emulators.asgi_server import BackgroundServer, serve
from emulators.bitrix24.app import create_app as create_emulator
from emulators.bitrix24.placement_rig import deal_tab_request
from emulators.bitrix24.seed import LOCAL_APP_ACCESS_TOKEN
from emulators.bitrix24.state import Portal
from salesflow.config.settings import Settings
from salesflow.deal_card.app import TAB_PATH
from salesflow.deal_card.app import create_app as create_card
from salesflow.integrations.bitrix24.client import Bitrix24Client
from salesflow.worker import WORKFLOWS
from salesflow.workflows.deal import DealWorkflow
from salesflow.workflows.models import DealInput, DealView
from salesflow.workflows.names import deal_workflow_id
from salesflow.workflows.sandbox import workflow_runner
from tests.workflows.conftest import calendar_rules, new_deal
from tests.workflows.doubles import FakePortal

MANAGER, OTHER_MANAGER, ROP, LOGIST, ACCOUNTANT = 3, 4, 2, 5, 11


class Forms(HTMLParser):
    """The page's forms by `data-action`: their inputs' names and values; plus notices."""

    def __init__(self, page: str) -> None:
        super().__init__()
        self.forms: dict[str, dict[str, str]] = {}
        self.not_for_you: set[str] = set()
        self._current: dict[str, str] | None = None
        self.feed(page)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form":
            self._current = self.forms.setdefault(a.get("data-action", ""), {})
        elif tag == "input" and self._current is not None and a.get("type") == "hidden":
            self._current[a["name"]] = a.get("value", "")
        elif tag == "p" and "not-for-you" in a.get("class", ""):
            self.not_for_you.add(a.get("data-action", ""))

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self._current = None


@dataclass
class Card:
    portal: Portal
    emulator: BackgroundServer
    server: BackgroundServer
    http: httpx.AsyncClient
    handle: WorkflowHandle[Any, Any]
    fake: FakePortal
    deal_id: int
    converter: DataConverter

    def tab_request(self, user_id: int) -> tuple[str, dict[str, str]]:
        request = deal_tab_request(self.portal, self.deal_id, user_id)
        return request.url, dict(request.form)

    async def open_tab(self, user_id: int, **changes: str) -> httpx.Response:
        """Open the deal's tab as `user_id`, the form changed by `changes` (forgeries)."""
        url, form = self.tab_request(user_id)
        form.update(changes)
        return await self.http.post(url, data=form)

    async def act(self, page: httpx.Response, action: str, **fields: str) -> httpx.Response:
        """Submit the page's form of `action` (or, for a forged try, another form's hidden
        fields with `action` set) with `fields` filled in."""
        forms = Forms(page.text).forms
        hidden = dict(forms.get(action) or next(iter(forms.values())))
        hidden["action"] = action
        return await self.http.post(
            f"{self.server.url}{TAB_PATH}/action", data={**hidden, **fields}
        )

    async def view(self) -> DealView:
        return await self.handle.query(DealWorkflow.state)

    async def updates(self) -> list[Any]:
        """The updates the workflow accepted: (name, decoded payload dict)."""
        found = []
        async for event in self.handle.fetch_history_events():
            if event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED:
                request = event.workflow_execution_update_accepted_event_attributes.accepted_request
                payloads = list(request.input.args.payloads)
                (decoded,) = await self.converter.decode(payloads, [dict])
                found.append((request.input.name, decoded))
        return found


def card_settings(emulator_url: str, portal: Portal, **deal_card: Any) -> Settings:
    return Settings.model_validate(
        {
            "bitrix24": {
                "webhook_url": f"{emulator_url}/rest/1/devsecret/",
                "application_token": portal.application_token,
                "app_rest_url": f"{emulator_url}/rest/",
                "rate_per_second": 50,
            },
            "deal_card": {"member_id": portal.member_id, **deal_card},
        }
    )


async def bind_tab(emulator_url: str, handler: str) -> Any:
    """placement.bind as the installed application (admin) does."""
    async with Bitrix24Client(
        f"{emulator_url}/rest/", access_token=LOCAL_APP_ACCESS_TOKEN, coalesce=False
    ) as client:
        return await client.call(
            "placement.bind",
            {"PLACEMENT": "CRM_DEAL_DETAIL_TAB", "HANDLER": handler, "TITLE": "Процесс сделки"},
        )


@contextlib.asynccontextmanager
async def card_stack(env: WorkflowEnvironment, **deal_card: Any) -> AsyncIterator[Card]:
    deal_id = random.randint(10**6, 10**7)
    fake = FakePortal(deal=new_deal(deal_id))
    emulator_app = create_emulator(rate_per_second=None)
    portal: Portal = emulator_app.state.portal
    queue = f"deal-card-{uuid.uuid4()}"
    async with serve(emulator_app) as emulator:
        settings = card_settings(emulator.url, portal, **deal_card)
        async with (
            serve(create_card(settings, env.client)) as server,
            httpx.AsyncClient(timeout=30) as http,
            Worker(
                env.client,
                task_queue=queue,
                workflows=WORKFLOWS,
                activities=fake.activities(),
                workflow_runner=workflow_runner(),
            ),
        ):
            await bind_tab(emulator.url, f"{server.url}{TAB_PATH}")
            handle = await env.client.start_workflow(
                DealWorkflow.run,
                DealInput(deal_id=deal_id, rules=calendar_rules()),
                id=deal_workflow_id(deal_id),
                task_queue=queue,
            )
            try:
                yield Card(
                    portal, emulator, server, http, handle, fake, deal_id, env.client.data_converter
                )
            finally:
                with contextlib.suppress(Exception):
                    for process in (await handle.query(DealWorkflow.state)).processes:
                        with contextlib.suppress(Exception):
                            await env.client.get_workflow_handle(process.workflow_id).terminate()
                with contextlib.suppress(Exception):
                    await handle.terminate()


@pytest.fixture
async def card(dev_env: WorkflowEnvironment) -> AsyncIterator[Card]:
    async with card_stack(dev_env) as stack:
        yield stack
