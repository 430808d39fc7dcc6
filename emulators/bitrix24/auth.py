"""Who is calling: an incoming webhook (`/rest/<user>/<secret>/…`) or the local application
(`/rest/<method>` with `auth=`, `access_token=` or `Authorization: Bearer`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from emulators.bitrix24.registry import RestError
from emulators.bitrix24.state import Portal
from emulators.bitrix24.values import to_int

_TOKEN_PARAMS = ("auth", "access_token")


@dataclass(frozen=True)
class Caller:
    user_id: int
    scopes: frozenset[str]
    app_id: str | None = None

    @property
    def key(self) -> str:
        """Identity for the operating-time limit (per app or per webhook)."""
        return f"app:{self.app_id}" if self.app_id else f"webhook:{self.user_id}"


def webhook_caller(portal: Portal, user_id: str, secret: str, scheme: str) -> Caller:
    caller = to_int(user_id)
    if caller is None or portal.webhooks.get(secret) != caller or caller not in portal.users:
        raise RestError("INVALID_CREDENTIALS", "Invalid request credentials", 401)
    if portal.require_https and scheme != "https":
        raise RestError("INVALID_REQUEST", "Https required.", 400)
    return Caller(caller, portal.webhook_scopes.get(secret, frozenset()))


def take_token(params: dict[str, Any], authorization: str | None) -> str | None:
    """Remove the token parameters from `params`; the token from them or a Bearer header."""
    token = None
    for name in _TOKEN_PARAMS:
        value = params.pop(name, None)
        if token is None and isinstance(value, str) and value:
            token = value
    if token is None and authorization:
        scheme, _, value = authorization.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            token = value.strip()
    return token


def oauth_caller(portal: Portal, token: str | None) -> Caller:
    if not token:
        raise RestError("NO_AUTH_FOUND", "Wrong authorization data", 401)
    app = portal.app_by_token(token)
    if app is None:
        return _user_caller(portal, token)
    if app.expires_at is not None and app.expires_at <= portal.now():
        raise RestError("expired_token", "The access token provided has expired", 401)
    return Caller(app.user_id, app.scopes, app.client_id)


def _user_caller(portal: Portal, token: str) -> Caller:
    """A user's token issued to a widget (`AUTH_ID`): that user, the application's scopes."""
    user_token = portal.user_token(token)
    app = portal.apps.get(user_token.client_id) if user_token is not None else None
    if user_token is None or app is None:
        raise RestError("invalid_token", "Unable to get application by token", 401)
    if user_token.expires_at is not None and user_token.expires_at <= portal.now():
        raise RestError("expired_token", "The access token provided has expired", 401)
    return Caller(user_token.user_id, app.scopes, app.client_id)
