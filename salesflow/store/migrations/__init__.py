"""Alembic migrations of the salesflow database (applied by `salesflow.store.db.init_db`)."""
