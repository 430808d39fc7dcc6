"""The schema as `create_all` made it before migrations: every table that is missing.

A database created by an earlier version (no `alembic_version` yet) is adopted: its tables are
kept as they are and the missing ones created, so it ends at this revision like a new one.

Revision ID: 0001
Revises:
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

Time = sa.DateTime(timezone=True)


def _tables() -> dict[str, tuple[list[sa.Column | sa.Constraint], list[tuple[str, list[str]]]]]:
    """Table → (columns and constraints, indexes as (name, columns))."""
    return {
        "app_token": (
            [
                sa.Column("client_id", sa.String(length=200), nullable=False),
                sa.Column("access_token", sa.Text(), nullable=False),
                sa.Column("refresh_token", sa.Text(), nullable=False),
                sa.Column("expires_at", sa.Float(), nullable=True),
                sa.Column("updated_at", Time, nullable=False),
                sa.Column("last_error", sa.Text(), nullable=True),
                sa.PrimaryKeyConstraint("client_id"),
            ],
            [],
        ),
        "deal_board": (
            [
                sa.Column("deal_id", sa.BigInteger(), nullable=False),
                sa.Column("title", sa.Text(), nullable=False),
                sa.Column("stage", sa.String(length=16), nullable=False),
                sa.Column("manager_id", sa.Integer(), nullable=True),
                sa.Column("amount", sa.Float(), nullable=False),
                sa.Column("document_set", sa.String(length=32), nullable=True),
                sa.Column("deadlines", sa.Text(), nullable=False),
                sa.Column("next_due", Time, nullable=True),
                sa.Column("overdue", sa.Boolean(), nullable=False),
                sa.Column("updated_at", Time, nullable=False),
                sa.PrimaryKeyConstraint("deal_id"),
            ],
            [
                ("ix_deal_board_manager_id", ["manager_id"]),
                ("ix_deal_board_overdue", ["overdue"]),
                ("ix_deal_board_stage", ["stage"]),
            ],
        ),
        "deal_deadline": (
            [
                sa.Column("id", sa.Integer(), nullable=False),
                sa.Column("deal_id", sa.BigInteger(), nullable=False),
                sa.Column("name", sa.String(length=64), nullable=False),
                sa.Column("stage", sa.String(length=16), nullable=False),
                sa.Column("manager_id", sa.Integer(), nullable=True),
                sa.Column("due", Time, nullable=False),
                sa.Column("missed", sa.Boolean(), nullable=False),
                sa.Column("closed_at", Time, nullable=True),
                sa.PrimaryKeyConstraint("id"),
            ],
            [("ix_deal_deadline_deal_id", ["deal_id"])],
        ),
        "inbox_event": (
            [
                sa.Column("id", sa.Integer(), nullable=False),
                sa.Column("dedup_key", sa.String(length=64), nullable=False),
                sa.Column("event", sa.String(length=100), nullable=False),
                sa.Column("entity_id", sa.BigInteger(), nullable=False),
                sa.Column("ts", sa.BigInteger(), nullable=False),
                sa.Column("received_at", Time, nullable=False),
                sa.Column("payload", sa.Text(), nullable=False),
                sa.Column("status", sa.String(length=16), nullable=False),
                sa.Column("reason", sa.Text(), nullable=True),
                sa.Column("attempts", sa.Integer(), nullable=False),
                sa.Column("next_attempt_at", Time, nullable=False),
                sa.Column("claimed_until", Time, nullable=True),
                sa.Column("forwarded_at", Time, nullable=True),
                sa.PrimaryKeyConstraint("id"),
                sa.UniqueConstraint("dedup_key"),
            ],
            [("ix_inbox_event_status", ["status"])],
        ),
        "mail_attempt": (
            [
                sa.Column("key", sa.String(length=200), nullable=False),
                sa.Column("attempts", sa.Integer(), nullable=False),
                sa.Column("last_at", Time, nullable=False),
                sa.PrimaryKeyConstraint("key"),
            ],
            [],
        ),
        "sent_mail": (
            [
                sa.Column("key", sa.String(length=200), nullable=False),
                sa.Column("recipients", sa.Text(), nullable=False),
                sa.Column("subject", sa.Text(), nullable=False),
                sa.Column("sent_at", Time, nullable=False),
                sa.PrimaryKeyConstraint("key"),
            ],
            [],
        ),
        "signal_mark": (
            [
                sa.Column("kind", sa.String(length=20), nullable=False),
                sa.Column("entity_id", sa.BigInteger(), nullable=False),
                sa.Column("modified", sa.BigInteger(), nullable=False),
                sa.Column("read_at", sa.Float(), nullable=False),
                sa.Column("row_id", sa.BigInteger(), nullable=True),
                sa.Column("signalled_at", Time, nullable=False),
                sa.PrimaryKeyConstraint("kind", "entity_id"),
            ],
            [],
        ),
        "sync_cursor": (
            [
                sa.Column("name", sa.String(length=100), nullable=False),
                sa.Column("value", sa.Text(), nullable=False),
                sa.Column("updated_at", Time, nullable=False),
                sa.PrimaryKeyConstraint("name"),
            ],
            [],
        ),
    }


def upgrade() -> None:
    present = set(sa.inspect(op.get_bind()).get_table_names())
    for name, (columns, indexes) in _tables().items():
        if name in present:
            continue
        op.create_table(name, *columns)
        for index, indexed in indexes:
            op.create_index(index, name, indexed, unique=False)


def downgrade() -> None:
    for name in reversed(list(_tables())):
        op.drop_table(name)
