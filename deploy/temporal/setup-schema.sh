#!/bin/sh
# One-shot in temporalio/admin-tools: Temporal's two PostgreSQL databases and their schemas.
#
# Safe to re-run, and the way to upgrade: an existing database is kept, `setup-schema -v 0.0`
# leaves a newer version alone, and `update-schema` applies only the versions this image has
# that the database has not seen. Raise the image tags together, then `docker compose up`.
set -eu

: "${POSTGRES_SEEDS:=postgresql}"
: "${DB_PORT:=5432}"
: "${POSTGRES_USER:=temporal}"
: "${SQL_PASSWORD:?SQL_PASSWORD is not set}"  # read by temporal-sql-tool itself
: "${DBNAME:=temporal}"
: "${VISIBILITY_DBNAME:=temporal_visibility}"
SCHEMA_DIR=/etc/temporal/schema/postgresql/v12

sql() {
    temporal-sql-tool --plugin postgres12 --ep "$POSTGRES_SEEDS" -p "$DB_PORT" \
        -u "$POSTGRES_USER" "$@"
}

setup() {  # setup <database> <versioned schema folder>
    if sql --db "$1" create; then
        echo "created database $1"
    else
        echo "database $1 not created (it exists, or the next step says why)"
    fi
    sql --db "$1" setup-schema -v 0.0
    sql --db "$1" update-schema -d "$2"
}

setup "$DBNAME" "$SCHEMA_DIR/temporal/versioned"
setup "$VISIBILITY_DBNAME" "$SCHEMA_DIR/visibility/versioned"
echo "Temporal schemas are up to date"
