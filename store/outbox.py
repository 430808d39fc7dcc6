"""The mail outbox: which e-mails (by idempotency key) have been handed to the SMTP server."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import DateTime, Text, select
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import Field, SQLModel

from store.db import session


class SentMail(SQLModel, table=True):
    __tablename__ = "sent_mail"

    key: str = Field(primary_key=True, max_length=200)
    recipients: str = Field(sa_type=Text)
    subject: str = Field(sa_type=Text)
    sent_at: datetime = Field(sa_type=DateTime(timezone=True))


async def was_sent(engine: AsyncEngine, key: str) -> bool:
    async with session(engine) as db:
        found = await db.exec(select(SentMail.key).where(SentMail.key == key))  # type: ignore[call-overload]
        return found.first() is not None


async def mark_sent(engine: AsyncEngine, key: str, recipients: list[str], subject: str) -> None:
    async with session(engine) as db:
        if await db.get(SentMail, key) is None:
            db.add(
                SentMail(
                    key=key,
                    recipients=", ".join(recipients),
                    subject=subject,
                    sent_at=datetime.now(UTC),
                )
            )
            await db.commit()
