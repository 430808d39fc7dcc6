"""The local application's OAuth tokens: refreshed when the portal says they expired.

Bitrix24 access tokens live an hour. `AppTokens` holds the current pair; on `expired_token` (or
`invalid_token`) `RefreshingCaller` asks it for a new one and repeats the call once. A refresh is
`GET <oauth_url>?grant_type=refresh_token&client_id&client_secret&refresh_token` at
oauth.bitrix.info; it answers a new access token *and* a new refresh token — the old one is
spent — so the pair is handed to a `TokenStore` (the database) and a restart goes on with it.

Concurrent callers that hit the expiry share one refresh: it runs under a lock, and a caller
whose token was already replaced meanwhile just takes the new one. Before refreshing, the
store is read again, so another process that refreshed first is followed, not raced. When the
current refresh token is refused (`invalid_grant`), the configured one is tried once more (an
operator may have just set a fresh one, or the portal was reset); when that fails too,
`TokenRefreshError` says so, and the OAuth server is not asked again until the stored pair
changes (another process refreshed) or the relay restarts with a new configuration.

Every pair and the client secret are registered with `config.redact` as soon as they are
known, so the refresh's URL (httpx logs it) and its errors carry none of them.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import httpx

from salesflow.config import redact
from salesflow.integrations.bitrix24.errors import Bitrix24Error, ServerError

log = logging.getLogger(__name__)

DEFAULT_OAUTH_URL = "https://oauth.bitrix.info/oauth/token/"
REFRESH_ON = frozenset({"expired_token", "invalid_token"})


class TokenRefreshError(Bitrix24Error):
    """The OAuth server refused the refresh (`invalid_grant`, `invalid_client`) or refresh is
    not configured (`code` "not_configured"): a person must act; retrying does not help."""


@dataclass(frozen=True)
class TokenPair:
    access_token: str
    refresh_token: str
    expires_at: float | None = None  # unix time, when the OAuth server said


@dataclass(frozen=True)
class OAuthApp:
    """The local application as the OAuth server knows it."""

    client_id: str
    client_secret: str
    oauth_url: str = DEFAULT_OAUTH_URL


class TokenStore(Protocol):
    """Where the latest pair survives a restart (the relay: `store/app_tokens.py`)."""

    async def load(self, client_id: str) -> TokenPair | None: ...

    async def save(self, client_id: str, pair: TokenPair) -> None: ...

    async def failed(self, client_id: str, pair: TokenPair, error: str) -> None: ...


@runtime_checkable
class TokenBearer(Protocol):
    """A client whose `access_token` can be replaced (`Bitrix24Client` of the OAuth route)."""

    access_token: str | None

    async def call(self, method: str, params: Mapping[str, Any] | None = None) -> Any: ...


def _error_code(exc: BaseException) -> str:
    return exc.code.lower() if isinstance(exc, Bitrix24Error) else ""


class AppTokens:
    """The current token pair of one local application, refreshed at most once per expiry."""

    def __init__(
        self,
        app: OAuthApp | None,
        configured: TokenPair,
        store: TokenStore | None = None,
        *,
        timeout: float = 15.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        redact.register(app.client_secret if app else None)
        redact.register(configured.access_token, configured.refresh_token, rotating=True)
        self.app = app
        self.configured = configured
        self.store = store
        self.refreshes = 0  # successful refreshes by this holder
        self.last_error: TokenRefreshError | None = None
        self._pair = configured
        self._timeout = timeout
        self._transport = transport
        self._lock = asyncio.Lock()
        self._loaded = False
        self._unsaved = False
        self._reported: TokenRefreshError | None = None

    @property
    def key(self) -> str:
        return self.app.client_id if self.app else ""

    @property
    def access_token(self) -> str:
        return self._pair.access_token

    @property
    def pair(self) -> TokenPair:
        return self._pair

    async def load(self) -> None:
        """Take the stored pair (newer than the configured one) the first time; save a pair
        whose saving failed before."""
        if self._loaded and not self._unsaved:
            return
        async with self._lock:
            if not self._loaded:
                stored = await self.store.load(self.key) if self.store else None
                if stored is not None:
                    redact.register(stored.access_token, stored.refresh_token, rotating=True)
                    self._pair = stored
                self._loaded = True
            if self._unsaved:
                await self._save(self._pair)

    async def refresh(self, stale: str) -> str:
        """A valid access token in place of `stale`: refreshed here, or by whoever came first."""
        async with self._lock:
            if self._pair.access_token != stale:
                return self._pair.access_token  # another caller refreshed meanwhile
            if await self._adopt_stored(stale_refresh=None):
                return self._pair.access_token
            if self.last_error is not None:  # refused before: asking again cannot help
                raise self.last_error
            if self.app is None:
                raise self._failure(
                    TokenRefreshError("not_configured", "no client id/secret to refresh with", 0)
                )
            pair = await self._refresh_pair(self.app)
            self._pair = pair
            self.refreshes += 1
            self.last_error = None
            await self._save(pair)
            log.info("refreshed the access token of application %s", self.app.client_id)
            return pair.access_token

    async def _refresh_pair(self, app: OAuthApp) -> TokenPair:
        tried = self._pair.refresh_token
        try:
            return await self._grant(app, tried)
        except TokenRefreshError as exc:
            if exc.code != "invalid_grant":
                raise self._failure(exc) from None
            refused = exc
        if await self._adopt_stored(stale_refresh=tried):  # another process rotated it first
            return self._pair
        fallback = self.configured.refresh_token
        if fallback and fallback != tried:
            try:
                return await self._grant(app, fallback)
            except TokenRefreshError as exc:
                refused = exc
        raise self._failure(refused)

    async def _adopt_stored(self, stale_refresh: str | None) -> bool:
        """Take a stored pair another process wrote since this one was read."""
        if self.store is None:
            return False
        stored = await self.store.load(self.key)
        if stored is None:
            return False
        redact.register(stored.access_token, stored.refresh_token, rotating=True)
        newer = (
            stored.access_token != self._pair.access_token
            if stale_refresh is None
            else stored.refresh_token != stale_refresh
        )
        if newer:
            self._pair = stored
            self.last_error = None
        return newer

    async def _grant(self, app: OAuthApp, refresh_token: str) -> TokenPair:
        params = {
            "grant_type": "refresh_token",
            "client_id": app.client_id,
            "client_secret": app.client_secret,
            "refresh_token": refresh_token,
        }
        try:
            async with httpx.AsyncClient(timeout=self._timeout, transport=self._transport) as http:
                response = await http.get(app.oauth_url, params=params)
        except httpx.HTTPError as exc:
            raise ServerError("TRANSPORT_ERROR", f"token refresh: {exc!r}", 0) from exc
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise ServerError("INVALID_RESPONSE", "token refresh: not JSON", response.status_code)
        if response.status_code >= 500:
            raise ServerError(str(body.get("error", "")), "token refresh", response.status_code)
        if "error" in body or not body.get("access_token") or not body.get("refresh_token"):
            raise TokenRefreshError(
                str(body.get("error") or "invalid_response"),
                str(body.get("error_description") or ""),
                response.status_code,
            )
        redact.register(str(body["access_token"]), str(body["refresh_token"]), rotating=True)
        expires = body.get("expires")
        if expires is None and body.get("expires_in") is not None:
            expires = time.time() + float(body["expires_in"])
        return TokenPair(
            str(body["access_token"]),
            str(body["refresh_token"]),
            float(expires) if expires is not None else None,
        )

    async def _save(self, pair: TokenPair) -> None:
        if self.store is None:
            return
        try:
            await self.store.save(self.key, pair)
        except Exception:  # the pair is in memory; saved at the next call (`load`)
            log.exception("could not save the refreshed application token; will try again")
            self._unsaved = True
        else:
            self._unsaved = False

    def _failure(self, error: TokenRefreshError) -> TokenRefreshError:
        self.last_error = error
        return error

    async def report(self, error: TokenRefreshError) -> None:
        """Keep the refusal where `salesflow doctor` can see it (once per refusal)."""
        if error is self._reported:
            return
        self._reported = error
        if self.store is not None:
            try:
                await self.store.failed(self.key, self._pair, str(error))
            except Exception:
                log.exception("could not record the token refresh failure")


class RefreshingCaller:
    """`call` through `client` with the holder's token; one refresh and retry on expiry."""

    def __init__(self, client: TokenBearer, tokens: AppTokens) -> None:
        self.client = client
        self.tokens = tokens

    async def call(self, method: str, params: Mapping[str, Any] | None = None) -> Any:
        await self.tokens.load()
        token = self.tokens.access_token
        if token:  # none configured, only a refresh token: refresh first
            self.client.access_token = token
            try:
                return await self.client.call(method, params)
            except Bitrix24Error as exc:
                if _error_code(exc) not in REFRESH_ON:
                    raise
        self.client.access_token = await self._refreshed(token)
        return await self.client.call(method, params)

    async def _refreshed(self, stale: str) -> str:
        try:
            return await self.tokens.refresh(stale)
        except TokenRefreshError as exc:
            await self.tokens.report(exc)
            raise
