#!/bin/sh
# Runs once, when the postgres container initializes its volume (docker compose --profile scale):
# lets the replica stream, and gives the service's role the session settings PgBouncer drops.
set -e
echo "host replication all all scram-sha-256" >> "$PGDATA/pg_hba.conf"
psql -v ON_ERROR_STOP=1 -U "$POSTGRES_USER" -d "$POSTGRES_DB" <<SQL
ALTER ROLE $POSTGRES_USER SET statement_timeout = 3000;
ALTER ROLE $POSTGRES_USER SET random_page_cost = 1.1;
ALTER ROLE $POSTGRES_USER SET jit = off;
SQL
