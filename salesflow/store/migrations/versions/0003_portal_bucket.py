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
    present = set(sa.inspect(op.get_bind()).get_table_names())
    if "portal_bucket" not in present:  # else made by `create_all` of these models: adopted
        op.create_table(
            "portal_bucket",
            sa.Column("origin", sa.String(length=200), nullable=False),
            sa.Column("level", sa.Float(), nullable=False),
            sa.Column("at", sa.Float(), nullable=False),
            sa.PrimaryKeyConstraint("origin"),
        )
    if "portal_bucket_lease" not in present:
        op.create_table(
            "portal_bucket_lease",
            sa.Column("id", sa.String(length=32), nullable=False),
            sa.Column("origin", sa.String(length=200), nullable=False),
            sa.Column("expires", sa.Float(), nullable=False),
            sa.PrimaryKeyConstraint("id"),
        )
        op.create_index(
            "ix_portal_bucket_lease_origin", "portal_bucket_lease", ["origin"], unique=False
        )


def downgrade() -> None:
    op.drop_table("portal_bucket_lease")
    op.drop_table("portal_bucket")
