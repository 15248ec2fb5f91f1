#!/bin/sh
# PostgreSQL init script: one role and one database per service, each role owning its database (so the
# service's `migrate` can create its tables) and no other. Run by the postgres image's entrypoint once,
# when the data directory is first created. Used by compose.yaml (mounted) and by k8s/10-postgres.yaml
# (the same text in the ConfigMap `postgres-init`; tests/test_manifests.py checks they are equal).
# Needs INVENTORY_DB_PASSWORD and ORDER_DB_PASSWORD, the passwords in the services' DATABASE_URLs.
set -eu
psql --no-psqlrc --set ON_ERROR_STOP=1 --username "${POSTGRES_USER:-postgres}" --dbname postgres \
    --set inventory_password="$INVENTORY_DB_PASSWORD" --set order_password="$ORDER_DB_PASSWORD" <<'SQL'
CREATE ROLE inventory LOGIN PASSWORD :'inventory_password';
CREATE DATABASE inventory OWNER inventory;
REVOKE ALL ON DATABASE inventory FROM PUBLIC;
CREATE ROLE orders LOGIN PASSWORD :'order_password';
CREATE DATABASE orders OWNER orders;
REVOKE ALL ON DATABASE orders FROM PUBLIC;
SQL
