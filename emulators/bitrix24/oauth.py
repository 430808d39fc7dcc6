"""The OAuth server of the Bitrix24 emulator: `GET /oauth/token/` (oauth.bitrix.info in real life).

Only `grant_type=refresh_token`: the client's id and secret plus the app's current refresh
token buy a new access token and a new refresh token; the old refresh token is spent (a second
use answers `invalid_grant`) and the old access token stops working. A wrong client id or
secret answers 401 `invalid_client`. Every request is logged in `portal.oauth_log`.
"""

from __future__ import annotations

import secrets
from typing import Any

from fastapi import FastAPI, Request, Response

from emulators.bitrix24.registry import RestError
from emulators.bitrix24.state import REFRESH_TOKEN_TTL, LocalApp, Portal
from emulators.bitrix24.values import php_json
from salesflow.integrations.bitrix24 import php_form

OAUTH_PATH = "/oauth/token/"
_JSON = "application/json; charset=utf-8"


def _param(params: dict[str, Any], name: str) -> str:
    value = params.get(name)
    return value if isinstance(value, str) else ""


def _client(portal: Portal, client_id: str, client_secret: str) -> LocalApp:
    app = portal.apps.get(client_id)
    if app is None or not client_secret or client_secret != app.client_secret:
        raise RestError("invalid_client", "Invalid client credentials", 401)
    return app


def refresh(portal: Portal, params: dict[str, Any], rest_endpoint: str) -> dict[str, Any]:
    """Rotate the app's token pair; the answer of oauth.bitrix.info."""
    grant = _param(params, "grant_type")
    if grant != "refresh_token":
        raise RestError("unsupported_grant_type", f"Grant type {grant!r} is not supported")
    app = _client(portal, _param(params, "client_id"), _param(params, "client_secret"))
    token = _param(params, "refresh_token")
    now = portal.now()
    expired = app.refresh_expires_at is not None and app.refresh_expires_at <= now
    if not token or token != app.refresh_token or expired:
        raise RestError("invalid_grant", "Invalid refresh token")
    app.access_token = secrets.token_hex(16)
    app.refresh_token = secrets.token_hex(16)
    expiry = portal.access_expiry()
    app.expires_at = None if expiry is None else float(int(expiry))  # whole seconds, as answered
    app.refresh_expires_at = now + REFRESH_TOKEN_TTL
    expires_in = int(portal.token_ttl) if portal.token_ttl is not None else 0
    return {
        "access_token": app.access_token,
        "expires": int(app.expires_at if app.expires_at is not None else now),
        "expires_in": expires_in,
        "scope": ",".join(sorted(app.scopes)),
        "domain": portal.domain or "oauth.bitrix.info",
        "server_endpoint": rest_endpoint,
        "client_endpoint": rest_endpoint,
        "member_id": portal.member_id,
        "user_id": app.user_id,
        "status": "L",
        "refresh_token": app.refresh_token,
    }


async def _params(request: Request) -> dict[str, Any]:
    """The query string, with an urlencoded body (a POST) merged over it."""
    params = php_form.decode(request.url.query)
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == "application/x-www-form-urlencoded":
        params.update(php_form.decode(await request.body()))
    return params


def oauth_routes(app: FastAPI, portal: Portal) -> None:
    @app.api_route(OAUTH_PATH, methods=["GET", "POST"])
    @app.api_route(OAUTH_PATH.rstrip("/"), methods=["GET", "POST"], include_in_schema=False)
    async def token(request: Request) -> Response:
        entry: dict[str, Any] = {"client_id": "", "at": portal.now()}
        rest_endpoint = f"{request.url.scheme}://{request.headers.get('host', '')}/rest/"
        try:
            try:
                params = await _params(request)
            except ValueError as exc:
                raise RestError("invalid_request", f"Wrong request parameters: {exc}") from exc
            entry["client_id"] = _param(params, "client_id")
            answer, status = refresh(portal, params, rest_endpoint), 200
            entry["outcome"] = "refreshed"
        except RestError as error:
            answer, status = error.body(), error.status
            entry["outcome"] = str(error.code)
        portal.oauth_log.append(entry)
        return Response(php_json(answer), status, media_type=_JSON)
