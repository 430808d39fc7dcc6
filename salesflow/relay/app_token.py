"""The local application's OAuth tokens for the relay: the holder built from configuration,
its pairs kept in the `app_token` table, and what a person does when a refresh is refused."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncEngine

from salesflow.config.settings import Settings
from salesflow.integrations.bitrix24.oauth import AppTokens, OAuthApp, TokenPair, TokenRefreshError
from salesflow.store import app_tokens


class AppTokenRefused(RuntimeError):
    """The application's token cannot be refreshed; the message says what to do."""


class DatabaseTokens:
    """`TokenStore` of the relay: the `app_token` table."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def load(self, client_id: str) -> TokenPair | None:
        stored = await app_tokens.get(self.engine, client_id)
        if stored is None:
            return None
        return TokenPair(stored.access_token, stored.refresh_token, stored.expires_at)

    async def save(self, client_id: str, pair: TokenPair) -> None:
        await app_tokens.put(
            self.engine, client_id, pair.access_token, pair.refresh_token, pair.expires_at
        )

    async def failed(self, client_id: str, pair: TokenPair, error: str) -> None:
        await app_tokens.set_error(
            self.engine, client_id, error, pair.access_token, pair.refresh_token, pair.expires_at
        )


def application_tokens(settings: Settings, engine: AsyncEngine) -> AppTokens:
    """The holder of the configured pair; with refresh configured, persisted in `engine`."""
    b24 = settings.bitrix24
    configured = TokenPair(b24.app_access_token, b24.app_refresh_token)
    if not b24.app_refresh_configured():
        return AppTokens(None, configured)
    app = OAuthApp(b24.app_client_id, b24.app_client_secret, b24.oauth_url)
    return AppTokens(app, configured, DatabaseTokens(engine))


def refusal_hint(error: TokenRefreshError) -> str:
    """What a person does about a refused refresh."""
    code = error.code.lower()
    if code == "invalid_grant":
        return (
            "the refresh token was refused (spent, older than ~28 days, or the application was"
            " re-installed): re-authorize (re-install) the local application on the portal, set"
            " bitrix24.app_access_token and bitrix24.app_refresh_token to the new pair and"
            " restart the relay"
        )
    if code == "invalid_client":
        return (
            "the OAuth server does not know the client: check bitrix24.app_client_id and"
            " bitrix24.app_client_secret («Код приложения», «Ключ приложения») and restart"
        )
    if code == "not_configured":
        return (
            "the access token expired and no refresh is configured: set bitrix24.app_client_id,"
            " bitrix24.app_client_secret and bitrix24.app_refresh_token (or a fresh"
            " bitrix24.app_access_token) and restart the relay"
        )
    return "check the bitrix24.app_* settings and bitrix24.oauth_url"
