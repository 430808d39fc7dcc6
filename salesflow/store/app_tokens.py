"""The local application's latest OAuth token pair, kept across restarts.

A refresh spends the refresh token it used, so the pair in the configuration is useless after the
first refresh: the relay saves every new pair here (one row per application client id) and
reads it at start. `last_error` holds the last refusal of a refresh (for `salesflow doctor`);
a saved pair clears it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Float, Text, select
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import Field, SQLModel

from salesflow.store.db import UtcDateTime, dialect_insert


class AppToken(SQLModel, table=True):
    __tablename__ = "app_token"

    client_id: str = Field(primary_key=True, max_length=200)
    access_token: str = Field(sa_type=Text)
    refresh_token: str = Field(sa_type=Text)
    expires_at: float | None = Field(default=None, sa_type=Float)  # unix time
    updated_at: datetime = Field(sa_type=UtcDateTime())
    last_error: str | None = Field(default=None, sa_type=Text)


@dataclass(frozen=True)
class StoredTokens:
    client_id: str
    access_token: str
    refresh_token: str
    expires_at: float | None
    updated_at: datetime
    last_error: str | None


# sqlmodel does not declare `__table__` on table models (a stub gap); it is there at runtime.
_table = AppToken.__table__  # type: ignore[attr-defined]
_c = _table.c


async def get(engine: AsyncEngine, client_id: str) -> StoredTokens | None:
    async with engine.connect() as conn:
        row = (await conn.execute(select(_table).where(_c.client_id == client_id))).first()
    if row is None:
        return None
    return StoredTokens(
        row.client_id,
        row.access_token,
        row.refresh_token,
        row.expires_at,
        row.updated_at,
        row.last_error,
    )


async def put(
    engine: AsyncEngine,
    client_id: str,
    access_token: str,
    refresh_token: str,
    expires_at: float | None,
) -> None:
    """Save (insert or replace) the pair and clear `last_error`; committed when this returns."""
    values = {
        "access_token": access_token,
        "refresh_token": refresh_token,
        "expires_at": expires_at,
        "updated_at": datetime.now(UTC),
        "last_error": None,
    }
    insert = dialect_insert(engine, _table).values(client_id=client_id, **values)
    upsert = insert.on_conflict_do_update(index_elements=["client_id"], set_=values)
    async with engine.begin() as conn:
        await conn.execute(upsert)


async def set_error(
    engine: AsyncEngine,
    client_id: str,
    error: str,
    access_token: str,
    refresh_token: str,
    expires_at: float | None = None,
) -> None:
    """Note a refused refresh on the stored pair; with none stored yet, store the pair that
    was refused (the configured one) with the error."""
    insert = dialect_insert(engine, _table).values(
        client_id=client_id,
        access_token=access_token,
        refresh_token=refresh_token,
        expires_at=expires_at,
        updated_at=datetime.now(UTC),
        last_error=error,
    )
    upsert = insert.on_conflict_do_update(index_elements=["client_id"], set_={"last_error": error})
    async with engine.begin() as conn:
        await conn.execute(upsert)
