"""portal_bucket: one Bitrix24 REST bucket per portal shared by every process (issue 16 item 2).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    if "portal_bucket" in sa.inspect(op.get_bind()).get_table_names():
        return  # a database made by `create_all` of this version's models, adopted
    op.create_table(
        "portal_bucket",
        sa.Column("origin", sa.String(length=200), nullable=False),
        sa.Column("level", sa.Float(), nullable=False),
        sa.Column("at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("origin"),
    )


def downgrade() -> None:
    op.drop_table("portal_bucket")
