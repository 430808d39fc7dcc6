"""Alembic environment: runs on the connection `init_db` hands over (no alembic.ini, no URL)."""

from __future__ import annotations

from alembic import context

from salesflow.store.db import metadata

config = context.config
connection = config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run the migrations through salesflow.store.db.init_db (or upgrade)")

context.configure(
    connection=connection,
    target_metadata=metadata(),
    render_as_batch=True,  # SQLite alters a table by copying it
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
