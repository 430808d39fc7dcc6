"""Admin endpoints of the Bitrix24 emulator (`/_emulator/...`): state, outbound handler and
delivery behaviour, faults, limits, portal-wide blocks, tokens, features, reset."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel

from emulators.bitrix24.events import EventDispatcher
from emulators.bitrix24.limits import BUCKET_PLANS
from emulators.bitrix24.state import Portal


class HandlerSettings(BaseModel):
    url: str | None = None
    application_token: str | None = None
    events: list[str] | None = None
    delay: float | None = None
    jitter: float | None = None
    drop_rate: float | None = None
    seed: int | None = None


class FaultSpec(BaseModel):
    count: int = 1
    status: int = 503
    body: str | None = None
    content_type: str = "text/html; charset=utf-8"
    method: str | None = None
    delay: float = 0.0
    passthrough: bool = False
    location: str | None = None


class RateLimit(BaseModel):
    rate_per_second: float | None = None
    burst: int = 50
    plan: str | None = None


class OperatingSettings(BaseModel):
    limit: float | None = None
    costs: dict[str, float] | None = None
    reset: bool = False


class Block(BaseModel):
    code: str = "OVERLOAD_LIMIT"
    description: str = "REST API is blocked due to overload."
    status: int = 503


class TokenState(BaseModel):
    """`expired` true: the access tokens expire now, false: they live a fresh `ttl` from now;
    `ttl` (seconds, null: never expire) sets the lifetime of tokens issued from now on;
    `revoke_refresh`: the refresh tokens expire (as after 28 days) and a refresh answers
    invalid_grant."""

    client_id: str | None = None
    expired: bool = True
    ttl: float | None = None
    revoke_refresh: bool = False


class UserTokenSpec(BaseModel):
    """Issue a user's token for the app (as opening a widget does), or with `expired` let every
    token of that user expire now."""

    user_id: int
    client_id: str | None = None
    expired: bool = False


def admin_routes(
    app: FastAPI,
    portal: Portal,
    events: EventDispatcher,
    populate: Callable[[Portal], None],
) -> None:
    @app.get("/_emulator/state")
    async def state() -> dict[str, Any]:
        return {**portal.summary(), "events": events.describe()}

    @app.post("/_emulator/handler")
    async def set_handler(settings: HandlerSettings) -> dict[str, Any]:
        portal.handler_url = settings.url
        if settings.application_token is not None:
            portal.application_token = settings.application_token
        if settings.events is not None:
            portal.subscribed_events = {e.upper() for e in settings.events}
        if settings.delay is not None:
            portal.event_delay = settings.delay
        if settings.jitter is not None:
            portal.event_jitter = settings.jitter
        if settings.drop_rate is not None:
            portal.event_drop_rate = settings.drop_rate
        if settings.seed is not None:
            portal.event_rng = random.Random(settings.seed)
        return {
            "handler_url": portal.handler_url,
            "subscribed_events": sorted(portal.subscribed_events),
            "delay": portal.event_delay,
            "jitter": portal.event_jitter,
            "drop_rate": portal.event_drop_rate,
        }

    @app.post("/_emulator/faults")
    async def add_fault(spec: FaultSpec) -> dict[str, Any]:
        portal.inject_fault(
            spec.count,
            status=spec.status,
            body=spec.body,
            content_type=spec.content_type,
            method=spec.method,
            delay=spec.delay,
            passthrough=spec.passthrough,
            location=spec.location,
        )
        return {"faults": len(portal.faults)}

    @app.delete("/_emulator/faults")
    async def clear_faults() -> dict[str, Any]:
        portal.faults.clear()
        return {"faults": 0}

    @app.post("/_emulator/rate-limit")
    async def set_rate_limit(limit: RateLimit) -> dict[str, Any]:
        rate, burst = limit.rate_per_second, limit.burst
        if limit.plan:
            rate, burst = BUCKET_PLANS[limit.plan]
        portal.bucket.configure(rate, burst)
        return {"rate_per_second": portal.bucket.rate, "burst": portal.bucket.capacity}

    @app.post("/_emulator/operating")
    async def set_operating(settings: OperatingSettings) -> dict[str, Any]:
        if "limit" in settings.model_fields_set:
            portal.operating.limit = settings.limit
        if settings.costs is not None:
            portal.operating.costs = dict(settings.costs)
        if settings.reset:
            portal.operating.reset()
        return {"limit": portal.operating.limit, "costs": portal.operating.costs}

    @app.post("/_emulator/block")
    async def block(spec: Block) -> dict[str, Any]:
        portal.block = spec.model_dump()
        return {"block": portal.block}

    @app.delete("/_emulator/block")
    async def unblock() -> dict[str, Any]:
        portal.block = None
        return {"block": None}

    @app.post("/_emulator/token")
    async def token_state(spec: TokenState) -> dict[str, Any]:
        given = spec.model_fields_set
        if "ttl" in given:
            portal.token_ttl = spec.ttl
        apps = [a for a in portal.apps.values() if spec.client_id in (None, a.client_id)]
        now = portal.now()
        for local_app in apps:
            if "expired" in given or not given - {"client_id"}:
                local_app.expires_at = now - 1 if spec.expired else portal.access_expiry()
            elif "ttl" in given:
                local_app.expires_at = portal.access_expiry()
            if spec.revoke_refresh:
                local_app.refresh_expires_at = now - 1
        return {
            "apps": [a.client_id for a in apps],
            "expired": spec.expired,
            "expires_at": {a.client_id: a.expires_at for a in apps},
            "ttl": portal.token_ttl,
        }

    @app.post("/_emulator/user-token")
    async def user_token(spec: UserTokenSpec) -> dict[str, Any]:
        if spec.expired:
            mine = [t for t in portal.user_tokens.values() if t.user_id == spec.user_id]
            for token in mine:
                token.expires_at = portal.now() - 1
            return {"expired": len(mine)}
        issued = portal.issue_user_token(spec.user_id, spec.client_id)
        return {
            "access_token": issued.access_token,
            "refresh_token": issued.refresh_token,
            "expires_at": issued.expires_at,
        }

    @app.post("/_emulator/features")
    async def set_features(features: dict[str, bool]) -> dict[str, Any]:
        portal.features.update(features)
        return {"features": portal.features}

    @app.post("/_emulator/reset")
    async def reset() -> dict[str, Any]:
        await events.drain()
        portal.load(portal.seed)
        populate(portal)
        for log_or_counter in (
            portal.calls,
            portal.batch_calls,
            portal.rejected,
            portal.deliveries,
            portal.faults,
            portal.event_log,
            portal.oauth_log,
        ):
            log_or_counter.clear()
        portal.requests = 0
        portal.bucket.reset()
        portal.operating.reset()
        return {"reset": True}
