#!/usr/bin/env bash
# Runs a second PostgreSQL cluster with TimescaleDB preloaded, beside the machine's own cluster
# (which is left as it is): Debian's cluster "tsdb" on 127.0.0.1:5433, user postgres, trust auth.
# The integration tests find it there (or at TEST_TIMESCALEDB_URL). Idempotent: creates the
# cluster once, starts it when it is down. Needs root, Debian's postgresql-common, and the
# timescaledb extension installed for that PostgreSQL (e.g. by ../shared/timescaledb/install.sh).
#
#   scripts/timescaledb-cluster.sh            # TIMESCALEDB_PORT, TIMESCALEDB_CLUSTER override
set -euo pipefail
port=${TIMESCALEDB_PORT:-5433}
name=${TIMESCALEDB_CLUSTER:-tsdb}
major=$(ls /etc/postgresql | sort -V | tail -1)
conf=/etc/postgresql/$major/$name/postgresql.conf
if [ ! -f "$conf" ]; then
  echo "timescaledb-cluster: creating cluster $major/$name on port $port"
  pg_createcluster "$major" "$name" --port "$port" -- --auth-local=trust --auth-host=trust >/dev/null
  {
    echo "shared_preload_libraries = 'timescaledb'"
    echo "timescaledb.telemetry_level = off"
  } >>"$conf"
fi
if ! pg_ctlcluster "$major" "$name" status >/dev/null 2>&1; then
  echo "timescaledb-cluster: starting $major/$name"
  pg_ctlcluster --skip-systemctl-redirect "$major" "$name" start
fi
echo "timescaledb-cluster: postgres://postgres@127.0.0.1:$port/postgres"
