"""deal_pipeline: each deal's Bitrix24 pipeline as the relay last learned it (issue 16 item 1).

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    if "deal_pipeline" in sa.inspect(op.get_bind()).get_table_names():
        return  # a database made by `create_all` of this version's models, adopted
    op.create_table(
        "deal_pipeline",
        sa.Column("deal_id", sa.BigInteger(), nullable=False),
        sa.Column("category_id", sa.Integer(), nullable=False),
        sa.Column("summary", sa.Text(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("deal_id"),
    )


def downgrade() -> None:
    op.drop_table("deal_pipeline")
