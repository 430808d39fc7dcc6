"""Every documented error style, the OAuth route of the local app, scopes and faults."""

from __future__ import annotations

from typing import TYPE_CHECKING

import httpx
import pytest

from salesflow.integrations.bitrix24 import (
    AccessDenied,
    AuthError,
    Bitrix24Client,
    PortalMoved,
    QueryLimitExceeded,
    ServerError,
)

if TYPE_CHECKING:
    from tests.integrations.bitrix24.conftest import Emulator, Rest


async def test_error_styles_of_the_portal(rest: Rest, app_rest: Rest) -> None:
    # classic CRM: empty code
    assert (await rest("crm.deal.get", {"id": 424242}))[1]["error"] == ""
    # tasks: numeric strings, ERROR_CORE with a <br> tail
    assert (await rest("tasks.task.complete", {"taskId": 424242}))[1]["error"] == "0"
    assert (await rest("tasks.task.add", {}))[1]["error"] == "100"
    core = (await rest("tasks.task.add", {"fields": {"RESPONSIBLE_ID": 3}}))[1]
    assert core["error_description"].endswith("<br>")
    # camelCase methods: an integer code for unknown (e.g. upper-case) fields
    status, body = await rest("crm.item.list", {"entityTypeId": 1032, "order": {"ID": "ASC"}})
    assert (status, body["error"]) == (400, 100)
    assert body["error_description"].startswith("Unknown field definition `I_D` (ID)")
    # named codes
    status, body = await rest("crm.item.get", {"entityTypeId": 1032, "id": 9})
    assert (status, body) == (400, {"error": "NOT_FOUND", "error_description": "Element not found"})
    status, body = await rest("crm.deal.list", {"order": {"ID": "UP"}})
    assert (status, body["error"]) == (400, "ERROR_ARGUMENT")
    assert body["error_description"] == "Order direction should be one of {ASC|DESC}"
    # ArgumentException adds the argument name
    status, body = await app_rest(
        "event.bind", {"event": "ONCRMDEALADD", "event_type": "sometimes"}
    )
    assert (status, body["error"], body["argument"]) == (400, "ERROR_ARGUMENT", "EVENT_TYPE")
    status, body = await app_rest("event.offline.list", {"filter": {"!EVENT_NAME": "X"}})
    assert (status, body["error_description"]) == (400, "Filter operation not allowed: !")
    status, body = await app_rest("event.bind", {"event": "ONNOTHING", "handler": "http://h/"})
    assert (status, body["error"]) == (400, "ERROR_EVENT_NOT_FOUND")


async def test_webhook_may_not_call_app_methods(rest: Rest) -> None:
    for method in ("event.bind", "event.get", "event.offline.get", "event.offline.list"):
        status, body = await rest(method, {"event": "ONCRMDEALADD", "event_type": "offline"})
        assert (status, body["error"]) == (403, "WRONG_AUTH_TYPE"), method
    status, body = await rest("batch", {"cmd": {"b": "event.get"}})
    assert body["result"]["result_error"]["b"]["error"] == "WRONG_AUTH_TYPE"


async def test_oauth_route_tokens(emu: Emulator, http: httpx.AsyncClient) -> None:
    url = f"{emu.oauth}user.current"
    query = await http.post(url, params={"auth": "dev-app-access-token"}, json={})
    form = await http.post(url, data={"access_token": "dev-app-access-token"})
    bearer = await http.post(url, headers={"Authorization": "Bearer dev-app-access-token"})
    assert [r.status_code for r in (query, form, bearer)] == [200, 200, 200]
    assert query.json()["result"]["ID"] == "1"
    assert (await http.post(url)).json()["error"] == "NO_AUTH_FOUND"
    wrong = await http.post(url, params={"auth": "nope"})
    assert (wrong.status_code, wrong.json()["error"]) == (401, "invalid_token")
    await http.post(f"{emu.url}/_emulator/token", json={"expired": True})
    expired = await http.post(url, params={"auth": "dev-app-access-token"})
    assert (expired.status_code, expired.json()["error"]) == (401, "expired_token")
    async with Bitrix24Client(
        emu.oauth, access_token="dev-app-access-token", rate_per_second=0
    ) as app:
        with pytest.raises(AuthError) as error:
            await app.call("user.current")
        assert error.value.code == "expired_token"
        await http.post(f"{emu.url}/_emulator/token", json={"expired": False})
        assert (await app.call("event.get")) == []
        assert "placement" in await app.call("scope")


async def test_scopes_https_and_portal_blocks(
    emu: Emulator, rest: Rest, http: httpx.AsyncClient
) -> None:
    emu.portal.webhook_scopes["devsecret"] = frozenset({"crm"})
    assert (await rest("scope"))[1]["result"] == ["crm"]
    status, body = await rest("tasks.task.list")
    assert (status, body["error"]) == (401, "insufficient_scope")
    assert "webhook token" in body["error_description"]
    emu.portal.insufficient_scope_status = 403
    assert (await rest("im.notify.system.add", {"USER_ID": 2, "MESSAGE": "x"}))[0] == 403
    assert (await rest("crm.deal.list"))[0] == 200
    emu.portal.require_https = True
    assert await rest("crm.deal.list") == (
        400,
        {"error": "INVALID_REQUEST", "error_description": "Https required."},
    )
    emu.portal.require_https = False
    await http.post(f"{emu.url}/_emulator/block", json={})
    async with Bitrix24Client(emu.webhook, rate_per_second=0) as b24:
        with pytest.raises(QueryLimitExceeded) as overload:
            await b24.call("crm.deal.list")
        assert overload.value.code == "OVERLOAD_LIMIT" and overload.value.retryable
        await http.post(
            f"{emu.url}/_emulator/block",
            json={
                "code": "ACCESS_DENIED",
                "description": "REST is available only on commercial plans.",
                "status": 403,
            },
        )
        with pytest.raises(AccessDenied):
            await b24.call("crm.deal.list")
        await http.delete(f"{emu.url}/_emulator/block")
        assert await b24.call("crm.deal.list") == []


async def test_faults_html_slow_and_domain_move(emu: Emulator, http: httpx.AsyncClient) -> None:
    async with Bitrix24Client(emu.webhook, rate_per_second=0, timeout=0.3) as b24:
        emu.portal.inject_fault(1, status=500, body="<html><h1>500</h1></html>")
        with pytest.raises(ServerError) as html:
            await b24.call("crm.deal.list")
        assert html.value.status == 500 and html.value.retryable
        emu.portal.inject_fault(1, delay=0.1, passthrough=True)
        assert await b24.call("crm.deal.list") == []  # slow but fine
        emu.portal.inject_fault(1, delay=1.0, passthrough=True)
        with pytest.raises(ServerError) as slow:
            await b24.call("crm.deal.list")
        assert slow.value.code == "TIMEOUT"
        await http.post(
            f"{emu.url}/_emulator/faults",
            json={"status": 302, "location": "https://new.bitrix24.ru/rest/1/devsecret/"},
        )
        with pytest.raises(PortalMoved) as moved:
            await b24.call("crm.deal.list")
        assert moved.value.location == "https://new.bitrix24.ru/rest/1/***/"  # redacted
        assert not moved.value.retryable
        emu.portal.inject_fault(1, status=503, body="<html>busy</html>")
        response = await http.post(f"{emu.webhook}crm.deal.list", json={})
        assert response.headers["content-type"].startswith("text/html")
