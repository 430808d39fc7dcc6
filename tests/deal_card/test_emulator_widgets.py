"""The Bitrix24 emulator's side of the deal card, over HTTP: placement.bind/get/unbind as the
application (admin) calls them, users' widget tokens and `user.current` with them, and the
tab's POST as the portal sends it."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from emulators.asgi_server import BackgroundServer, serve
from emulators.bitrix24.app import create_app as create_emulator
from emulators.bitrix24.placement_rig import deal_tab_request
from emulators.bitrix24.seed import LOCAL_APP_ACCESS_TOKEN
from emulators.bitrix24.state import Portal

TAB = "CRM_DEAL_DETAIL_TAB"
HANDLER = "https://salesflow.example.ru/bitrix24/deal-card"


@pytest.fixture
async def emulator() -> AsyncIterator[tuple[BackgroundServer, Portal]]:
    app = create_emulator(rate_per_second=None)
    async with serve(app) as server:
        yield server, app.state.portal


async def _call(
    server: BackgroundServer, method: str, token: str = LOCAL_APP_ACCESS_TOKEN, **params: object
) -> httpx.Response:
    async with httpx.AsyncClient() as http:
        return await http.post(f"{server.url}/rest/{method}?auth={token}", json=params)


async def test_placement_bind_get_unbind(emulator: tuple[BackgroundServer, Portal]) -> None:
    server, _ = emulator
    bound = await _call(server, "placement.bind", PLACEMENT=TAB, HANDLER=HANDLER, TITLE="Процесс")
    assert bound.json()["result"] is True
    again = await _call(server, "placement.bind", PLACEMENT=TAB, HANDLER=HANDLER)
    assert again.status_code == 400
    assert again.json()["error_description"].endswith("Handler already binded")
    got = (await _call(server, "placement.get")).json()["result"]
    assert got == [
        {
            "placement": TAB,
            "userId": 0,
            "handler": HANDLER,
            "options": [],
            "title": "Процесс",
            "description": "",
            "langAll": [],
        }
    ]
    missing = await _call(server, "placement.bind", HANDLER=HANDLER)
    assert missing.json()["argument"] == "PLACEMENT"
    unknown = await _call(server, "placement.bind", PLACEMENT="CRM_NOWHERE", HANDLER=HANDLER)
    assert unknown.json()["error"] == "ERROR_PLACEMENT_NOT_FOUND"
    gone = (await _call(server, "placement.unbind", PLACEMENT=TAB)).json()["result"]
    assert gone == {"count": 2}  # +1 found, +1 removed (placement-unbind.md)
    assert (await _call(server, "placement.get")).json()["result"] == []


async def test_placement_methods_need_the_application_and_an_admin(
    emulator: tuple[BackgroundServer, Portal],
) -> None:
    server, portal = emulator
    async with httpx.AsyncClient() as http:
        webhook = await http.post(
            f"{server.url}/rest/1/devsecret/placement.bind",
            json={"PLACEMENT": TAB, "HANDLER": HANDLER},
        )
    assert (webhook.status_code, webhook.json()["error"]) == (403, "WRONG_AUTH_TYPE")
    manager = portal.issue_user_token(3)
    refused = await _call(
        server, "placement.bind", manager.access_token, PLACEMENT=TAB, HANDLER=HANDLER
    )
    assert (refused.status_code, refused.json()["error"]) == (403, "ACCESS_DENIED")


async def test_user_current_answers_for_the_users_own_token(
    emulator: tuple[BackgroundServer, Portal],
) -> None:
    server, portal = emulator
    manager = portal.issue_user_token(3)
    me = (await _call(server, "user.current", manager.access_token)).json()["result"]
    assert (me["ID"], me["NAME"], me["LAST_NAME"]) == ("3", "Иван", "Петров")
    app = (await _call(server, "user.current")).json()["result"]
    assert app["ID"] == "1"  # the application's own token is the installing admin's
    forged = await _call(server, "user.current", "forged")
    assert (forged.status_code, forged.json()["error"]) == (401, "invalid_token")
    manager.expires_at = portal.now() - 1
    expired = await _call(server, "user.current", manager.access_token)
    assert (expired.status_code, expired.json()["error"]) == (401, "expired_token")
    async with httpx.AsyncClient() as http:
        issued = await http.post(f"{server.url}/_emulator/user-token", json={"user_id": 4})
    token = issued.json()["access_token"]
    assert (await _call(server, "user.current", token)).json()["result"]["ID"] == "4"


async def test_the_tab_post_is_what_the_portal_sends(
    emulator: tuple[BackgroundServer, Portal],
) -> None:
    server, portal = emulator
    with pytest.raises(LookupError):
        deal_tab_request(portal, 1, 3)  # nothing bound: no tab in the card
    await _call(server, "placement.bind", PLACEMENT=TAB, HANDLER=HANDLER + "?x=1")
    request = deal_tab_request(portal, 8061, 3)
    query = parse_qs(urlsplit(request.url).query)
    assert set(query) == {"x", "DOMAIN", "PROTOCOL", "LANG", "APP_SID"}
    form = request.form
    assert set(form) == {
        "AUTH_ID", "AUTH_EXPIRES", "REFRESH_ID", "SERVER_ENDPOINT", "APPLICATION_TOKEN",
        "APPLICATION_SCOPE", "member_id", "status", "PLACEMENT", "PLACEMENT_OPTIONS",
    }  # fmt: skip
    assert json.loads(form["PLACEMENT_OPTIONS"])["ID"] == "8061"  # a JSON string, ID a string
    assert (form["PLACEMENT"], form["status"]) == (TAB, "L")
    assert form["APPLICATION_TOKEN"] == portal.application_token
    assert form["member_id"] == portal.member_id
    assert portal.user_tokens[form["AUTH_ID"]].user_id == 3
    with pytest.raises(ValueError):
        deal_tab_request(portal, 8061, 12)  # a dismissed employee cannot sign in
