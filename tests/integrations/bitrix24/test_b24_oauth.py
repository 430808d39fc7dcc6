"""The local application's token: the emulator's expiry and OAuth server (refresh, rotation,
refusals) and the client's token holder (one refresh for concurrent callers, the fallback to
the configured refresh token), over real HTTP."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from emulators.bitrix24.oauth import OAUTH_PATH
from emulators.bitrix24.seed import (
    LOCAL_APP_ACCESS_TOKEN,
    LOCAL_APP_CLIENT_ID,
    LOCAL_APP_CLIENT_SECRET,
    LOCAL_APP_REFRESH_TOKEN,
)
from salesflow.integrations.bitrix24 import AuthError, Bitrix24Client
from salesflow.integrations.bitrix24.oauth import (
    AppTokens,
    OAuthApp,
    RefreshingCaller,
    TokenPair,
    TokenRefreshError,
)

if TYPE_CHECKING:
    from tests.integrations.bitrix24.conftest import Emulator, StartEmulator

SEEDED = TokenPair(LOCAL_APP_ACCESS_TOKEN, LOCAL_APP_REFRESH_TOKEN)


def refresh_params(refresh_token: str = LOCAL_APP_REFRESH_TOKEN, **extra: str) -> dict[str, str]:
    return {
        "grant_type": "refresh_token",
        "client_id": LOCAL_APP_CLIENT_ID,
        "client_secret": LOCAL_APP_CLIENT_SECRET,
        "refresh_token": refresh_token,
        **extra,
    }


async def app_call(http: httpx.AsyncClient, emu: Emulator, token: str) -> tuple[int, Any]:
    response = await http.post(f"{emu.oauth}scope", params={"auth": token}, json={})
    return response.status_code, response.json()


def outcomes(emu: Emulator) -> list[str]:
    return [entry["outcome"] for entry in emu.portal.oauth_log]


class MemoryTokens:
    """A `TokenStore` in a dict (the relay's is the database)."""

    def __init__(self, pairs: dict[str, TokenPair] | None = None) -> None:
        self.pairs = dict(pairs or {})
        self.errors: dict[str, str] = {}

    async def load(self, client_id: str) -> TokenPair | None:
        return self.pairs.get(client_id)

    async def save(self, client_id: str, pair: TokenPair) -> None:
        self.pairs[client_id] = pair

    async def failed(self, client_id: str, pair: TokenPair, error: str) -> None:
        self.errors[client_id] = error


def holder(
    emu: Emulator, store: MemoryTokens | None = None, configured: TokenPair = SEEDED
) -> AppTokens:
    app = OAuthApp(LOCAL_APP_CLIENT_ID, LOCAL_APP_CLIENT_SECRET, emu.url + OAUTH_PATH)
    return AppTokens(app, configured, store)


def oauth_client(emu: Emulator) -> Bitrix24Client:
    return Bitrix24Client(
        emu.oauth, access_token=LOCAL_APP_ACCESS_TOKEN, rate_per_second=0, coalesce=False
    )


# ---- the emulator ------------------------------------------------------------------------------


async def test_access_token_expires_after_its_ttl(
    start_emulator: StartEmulator, http: httpx.AsyncClient
) -> None:
    emu = await start_emulator()
    assert (await app_call(http, emu, LOCAL_APP_ACCESS_TOKEN))[0] == 200
    emu.portal.clock = lambda: time.time() + 3601  # an hour and a second later
    status, body = await app_call(http, emu, LOCAL_APP_ACCESS_TOKEN)
    assert (status, body["error"]) == (401, "expired_token")
    assert body["error_description"] == "The access token provided has expired"

    lasting = await start_emulator(token_ttl=None)
    lasting.portal.clock = lambda: time.time() + 30 * 86400
    assert (await app_call(http, lasting, LOCAL_APP_ACCESS_TOKEN))[0] == 200

    short = await start_emulator(token_ttl=5)
    assert (await app_call(http, short, LOCAL_APP_ACCESS_TOKEN))[0] == 200
    short.portal.clock = lambda: time.time() + 6
    assert (await app_call(http, short, LOCAL_APP_ACCESS_TOKEN))[1]["error"] == "expired_token"


async def test_admin_endpoint_shortens_and_forces_expiry(
    emu: Emulator, http: httpx.AsyncClient
) -> None:
    answer = (await http.post(f"{emu.url}/_emulator/token", json={"ttl": 0.3})).json()
    assert answer["ttl"] == 0.3
    assert (await app_call(http, emu, LOCAL_APP_ACCESS_TOKEN))[0] == 200
    await asyncio.sleep(0.4)
    assert (await app_call(http, emu, LOCAL_APP_ACCESS_TOKEN))[1]["error"] == "expired_token"
    await http.post(f"{emu.url}/_emulator/token", json={"expired": False, "ttl": 3600})
    assert (await app_call(http, emu, LOCAL_APP_ACCESS_TOKEN))[0] == 200
    await http.post(f"{emu.url}/_emulator/token", json={"expired": True})
    assert (await app_call(http, emu, LOCAL_APP_ACCESS_TOKEN))[1]["error"] == "expired_token"


async def test_refresh_rotates_the_pair_and_spends_the_old_one(
    emu: Emulator, http: httpx.AsyncClient
) -> None:
    await http.post(f"{emu.url}/_emulator/token", json={"expired": True})
    before = time.time()
    response = await http.get(emu.url + OAUTH_PATH, params=refresh_params())
    assert response.status_code == 200
    body = response.json()
    assert body["expires_in"] == 3600
    assert int(before) + 3600 <= body["expires"] <= time.time() + 3600
    assert body["member_id"] == emu.portal.member_id and body["user_id"] == 1
    assert body["client_endpoint"] == f"{emu.url}/rest/" and body["status"] == "L"
    new_access, new_refresh = body["access_token"], body["refresh_token"]
    assert new_access != LOCAL_APP_ACCESS_TOKEN and new_refresh != LOCAL_APP_REFRESH_TOKEN

    assert (await app_call(http, emu, new_access))[0] == 200
    status, old = await app_call(http, emu, LOCAL_APP_ACCESS_TOKEN)
    assert (status, old["error"]) == (401, "invalid_token")
    spent = await http.get(emu.url + OAUTH_PATH, params=refresh_params())
    assert (spent.status_code, spent.json()["error"]) == (400, "invalid_grant")
    again = await http.get(emu.url + OAUTH_PATH, params=refresh_params(new_refresh))
    assert again.status_code == 200 and again.json()["refresh_token"] != new_refresh
    assert outcomes(emu) == ["refreshed", "invalid_grant", "refreshed"]


@pytest.mark.parametrize(
    ("params", "status", "error"),
    [
        (refresh_params(client_secret="wrong"), 401, "invalid_client"),
        (refresh_params(client_id="local.other.1"), 401, "invalid_client"),
        (refresh_params("not-a-refresh-token"), 400, "invalid_grant"),
        (refresh_params(grant_type="password"), 400, "unsupported_grant_type"),
    ],
    ids=["secret", "client", "token", "grant"],
)
async def test_refusals(
    params: dict[str, str], status: int, error: str, emu: Emulator, http: httpx.AsyncClient
) -> None:
    response = await http.get(emu.url + OAUTH_PATH, params=params)
    assert (response.status_code, response.json()["error"]) == (status, error)
    assert emu.portal.apps[LOCAL_APP_CLIENT_ID].refresh_token == LOCAL_APP_REFRESH_TOKEN


async def test_a_refresh_token_past_its_lifetime_is_refused(
    emu: Emulator, http: httpx.AsyncClient
) -> None:
    emu.portal.clock = lambda: time.time() + 29 * 86400
    late = await http.get(emu.url + OAUTH_PATH, params=refresh_params())
    assert late.json()["error"] == "invalid_grant"
    emu.portal.clock = time.time
    await http.post(f"{emu.url}/_emulator/token", json={"revoke_refresh": True})
    revoked = await http.get(emu.url + OAUTH_PATH, params=refresh_params())
    assert revoked.json()["error"] == "invalid_grant"
    assert (await app_call(http, emu, LOCAL_APP_ACCESS_TOKEN))[0] == 200  # access untouched


# ---- the token holder -------------------------------------------------------------------------


async def test_an_expired_call_is_refreshed_and_repeated(emu: Emulator) -> None:
    store = MemoryTokens()
    tokens = holder(emu, store)
    emu.portal.apps[LOCAL_APP_CLIENT_ID].expires_at = time.time() - 1
    async with oauth_client(emu) as client:
        with pytest.raises(AuthError):  # the bare client fails at the expiry
            await client.call("scope")
        caller = RefreshingCaller(client, tokens)
        assert "crm" in await caller.call("scope")
    portal_app = emu.portal.apps[LOCAL_APP_CLIENT_ID]
    assert outcomes(emu) == ["refreshed"] and tokens.refreshes == 1
    assert store.pairs[LOCAL_APP_CLIENT_ID].access_token == portal_app.access_token
    assert store.pairs[LOCAL_APP_CLIENT_ID].refresh_token == portal_app.refresh_token
    assert store.pairs[LOCAL_APP_CLIENT_ID].expires_at == portal_app.expires_at


async def test_concurrent_expired_calls_share_one_refresh(
    emu: Emulator, http: httpx.AsyncClient
) -> None:
    tokens = holder(emu, MemoryTokens())
    await http.post(f"{emu.url}/_emulator/token", json={"expired": True})
    async with oauth_client(emu) as client:
        caller = RefreshingCaller(client, tokens)
        answers = await asyncio.gather(*(caller.call("scope") for _ in range(6)))
    assert all("crm" in answer for answer in answers)
    assert emu.portal.calls["scope"] >= 12  # six expired, six repeated
    assert outcomes(emu) == ["refreshed"] and tokens.refreshes == 1


async def test_a_refused_refresh_is_reported_and_not_repeated(
    emu: Emulator, http: httpx.AsyncClient
) -> None:
    store = MemoryTokens()
    tokens = holder(emu, store)
    await http.post(f"{emu.url}/_emulator/token", json={"expired": True, "revoke_refresh": True})
    async with oauth_client(emu) as client:
        caller = RefreshingCaller(client, tokens)
        with pytest.raises(TokenRefreshError) as refused:
            await caller.call("scope")
        assert refused.value.code == "invalid_grant"
        with pytest.raises(TokenRefreshError):
            await caller.call("scope")
    assert outcomes(emu) == ["invalid_grant"]  # asked once, not on every call
    assert "invalid_grant" in store.errors[LOCAL_APP_CLIENT_ID]
    assert LOCAL_APP_CLIENT_ID not in store.pairs


async def test_a_stored_pair_unknown_to_the_portal_falls_back_to_the_configured_one(
    emu: Emulator,
) -> None:
    """A portal reset (the dev stack restarted) or a fresh pair set by an operator: the stored
    pair is refused, the configured refresh token is tried once more."""
    store = MemoryTokens({LOCAL_APP_CLIENT_ID: TokenPair("gone-access", "gone-refresh")})
    tokens = holder(emu, store)
    async with oauth_client(emu) as client:
        assert "crm" in await RefreshingCaller(client, tokens).call("scope")
    assert outcomes(emu) == ["invalid_grant", "refreshed"]
    assert store.pairs[LOCAL_APP_CLIENT_ID].access_token == (
        emu.portal.apps[LOCAL_APP_CLIENT_ID].access_token
    )


async def test_a_pair_refreshed_by_another_process_is_followed(
    emu: Emulator, http: httpx.AsyncClient
) -> None:
    store = MemoryTokens()
    first, second = holder(emu, store), holder(emu, store)
    async with oauth_client(emu) as one, oauth_client(emu) as two:
        assert await RefreshingCaller(one, first).call("scope")
        assert await RefreshingCaller(two, second).call("scope")  # loads the seeded pair
        await http.post(f"{emu.url}/_emulator/token", json={"expired": True})
        assert await RefreshingCaller(one, first).call("scope")  # refreshes, stores
        assert await RefreshingCaller(two, second).call("scope")  # invalid_token → stored pair
    assert outcomes(emu) == ["refreshed"]
    assert (first.refreshes, second.refreshes) == (1, 0)
    assert second.access_token == first.access_token


async def test_without_refresh_settings_the_expiry_is_named(emu: Emulator) -> None:
    tokens = AppTokens(None, SEEDED)
    emu.portal.apps[LOCAL_APP_CLIENT_ID].expires_at = time.time() - 1
    async with oauth_client(emu) as client:
        with pytest.raises(TokenRefreshError) as refused:
            await RefreshingCaller(client, tokens).call("scope")
    assert refused.value.code == "not_configured"
    assert outcomes(emu) == []
