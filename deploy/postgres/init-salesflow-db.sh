#!/bin/sh
# Runs once, when the PostgreSQL volume is first initialised (docker-entrypoint-initdb.d):
# the salesflow role and database (the relay's inbox, the mail outbox).
# Temporal's databases are made by the temporal-schema one-shot.
set -eu
: "${APP_DB_PASSWORD:?APP_DB_PASSWORD is not set}"
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
    -v app_password="$APP_DB_PASSWORD" <<'SQL'
CREATE ROLE salesflow LOGIN PASSWORD :'app_password';
CREATE DATABASE salesflow OWNER salesflow;
SQL
