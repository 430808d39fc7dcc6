"""The mail outbox: which e-mails (by idempotency key) the SMTP server accepted, and how many
times each was handed to it — more than once means an answer was lost and the e-mail resent."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import Text, select
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import Field, SQLModel

from salesflow.store.db import UtcDateTime, dialect_insert, session


class SentMail(SQLModel, table=True):
    __tablename__ = "sent_mail"

    key: str = Field(primary_key=True, max_length=200)
    recipients: str = Field(sa_type=Text)
    subject: str = Field(sa_type=Text)
    sent_at: datetime = Field(sa_type=UtcDateTime())


class MailAttempt(SQLModel, table=True):
    __tablename__ = "mail_attempt"

    key: str = Field(primary_key=True, max_length=200)
    attempts: int = 0
    last_at: datetime = Field(sa_type=UtcDateTime())


# sqlmodel does not declare `__table__` on table models (a stub gap); it is there at runtime.
_attempts = MailAttempt.__table__  # type: ignore[attr-defined]


async def count_attempt(engine: AsyncEngine, key: str) -> int:
    """Record that the e-mail of `key` is being handed to the SMTP server; its attempt number."""
    now = datetime.now(UTC)
    insert = dialect_insert(engine, _attempts).values(key=key, attempts=1, last_at=now)
    upsert = insert.on_conflict_do_update(
        index_elements=["key"],
        set_={"attempts": _attempts.c.attempts + 1, "last_at": now},
    ).returning(_attempts.c.attempts)
    async with engine.begin() as conn:
        return int((await conn.execute(upsert)).scalar_one())


async def attempts_of(engine: AsyncEngine, key: str) -> int:
    async with session(engine) as db:
        row = await db.get(MailAttempt, key)
        return row.attempts if row is not None else 0


async def was_sent(engine: AsyncEngine, key: str) -> bool:
    async with session(engine) as db:
        # sqlmodel types exec() only for its own select(); this one is SQLAlchemy's.
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
