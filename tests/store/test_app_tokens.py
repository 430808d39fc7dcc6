"""The local application's token pair in the database, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncEngine

from salesflow.store import app_tokens


async def test_a_pair_is_saved_replaced_and_read(engine: AsyncEngine) -> None:
    assert await app_tokens.get(engine, "local.app.1") is None
    started = datetime.now(UTC)
    await app_tokens.put(engine, "local.app.1", "access-1", "refresh-1", 1_800_000_000.0)
    await app_tokens.put(engine, "local.other.2", "other", "other-refresh", None)
    await app_tokens.put(engine, "local.app.1", "access-2", "refresh-2", 1_800_003_600.0)
    stored = await app_tokens.get(engine, "local.app.1")
    assert stored is not None
    assert (stored.access_token, stored.refresh_token, stored.expires_at) == (
        "access-2",
        "refresh-2",
        1_800_003_600.0,
    )
    assert stored.updated_at >= started and stored.last_error is None
    other = await app_tokens.get(engine, "local.other.2")
    assert other is not None and (other.access_token, other.expires_at) == ("other", None)


async def test_a_refusal_is_noted_and_a_new_pair_clears_it(engine: AsyncEngine) -> None:
    await app_tokens.set_error(engine, "local.app.1", "invalid_grant", "cfg-access", "cfg-refresh")
    first = await app_tokens.get(engine, "local.app.1")
    assert first is not None
    assert (first.access_token, first.last_error) == ("cfg-access", "invalid_grant")

    await app_tokens.put(engine, "local.app.1", "access-2", "refresh-2", None)
    await app_tokens.set_error(engine, "local.app.1", "invalid_client", "cfg-access", "cfg")
    noted = await app_tokens.get(engine, "local.app.1")
    assert noted is not None  # the stored pair stays; only the error is noted
    assert (noted.access_token, noted.refresh_token) == ("access-2", "refresh-2")
    assert noted.last_error == "invalid_client"

    await app_tokens.put(engine, "local.app.1", "access-3", "refresh-3", None)
    cleared = await app_tokens.get(engine, "local.app.1")
    assert cleared is not None and cleared.last_error is None
