#!/bin/sh
# The streaming replica (docker compose --profile scale): copied from the primary with
# pg_basebackup -R on its first start, as tests/test_read_replica.py makes its own.
set -e
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  until pg_isready -h postgres -U enrollment; do sleep 1; done
  PGPASSWORD=enrollment pg_basebackup -h postgres -U enrollment -D "$PGDATA" -R -X stream -c fast
  chmod 700 "$PGDATA"
fi
exec postgres
