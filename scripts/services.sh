#!/usr/bin/env bash
# Brings up what the service and its tests need on a Debian or Ubuntu host: Redis on
# 127.0.0.1:6379 and PostgreSQL on 127.0.0.1:5432 (user postgres, trust authentication for local
# TCP, as the service's default DATABASE_URL expects). Idempotent: it checks first, says what it
# found, installs a missing package (redis-server, postgresql), starts what is down without
# systemd (containers and CI jobs have none), and waits until each answers. A second run changes
# nothing and says so. One line per service; one line per problem, and a non-zero exit.
#
#   sudo scripts/services.sh
set -euo pipefail

answers() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_for() {
  local port=$1
  for _ in $(seq 1 60); do
    answers "$port" && return 0
    sleep 1
  done
  return 1
}

fail() {
  echo "services: $*" >&2
  exit 1
}

updated=
install() {
  if [ "$(id -u)" != 0 ]; then
    fail "$1 is not installed and installing it needs root: run this script with sudo"
  fi
  if [ -z "$updated" ]; then
    apt-get update -qq || fail "apt-get update failed"
    updated=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null ||
    fail "apt-get install $* failed"
}

# Redis
if answers 6379; then
  echo "redis: running on 127.0.0.1:6379"
else
  how=started
  if ! command -v redis-server >/dev/null 2>&1; then
    install redis-server
    how="installed and started"
  fi
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no >/dev/null ||
    fail "redis-server did not start"
  wait_for 6379 || fail "Redis did not answer on 127.0.0.1:6379 within 60 s"
  echo "redis: $how on 127.0.0.1:6379"
fi

# PostgreSQL
if answers 5432; then
  echo "postgresql: running on 127.0.0.1:5432"
else
  how=started
  if ! ls /etc/postgresql/*/main/postgresql.conf >/dev/null 2>&1; then
    command -v pg_ctlcluster >/dev/null 2>&1 || install postgresql
    how="installed and started"
    if ! ls /etc/postgresql/*/main/postgresql.conf >/dev/null 2>&1; then
      major=$(ls /usr/lib/postgresql | sort -V | tail -1)
      pg_createcluster "$major" main >/dev/null || fail "pg_createcluster $major main failed"
    fi
  fi
  major=$(ls /etc/postgresql | sort -V | tail -1)
  hba=/etc/postgresql/$major/main/pg_hba.conf
  # local TCP as the postgres user without a password: what the default DATABASE_URL and the
  # tests use (set a password and put it in DATABASE_URL instead on a shared host)
  if ! grep -Eq '^host\s+all\s+all\s+127\.0\.0\.1/32\s+trust' "$hba"; then
    sed -i '1i host all all 127.0.0.1/32 trust\nhost all all ::1/128 trust' "$hba"
    echo "postgresql: local TCP connections trusted ($hba)"
  fi
  pg_ctlcluster --skip-systemctl-redirect "$major" main start || fail "PostgreSQL $major/main did not start"
  wait_for 5432 || fail "PostgreSQL did not answer on 127.0.0.1:5432 within 60 s"
  echo "postgresql: $how on 127.0.0.1:5432"
fi

if command -v psql >/dev/null 2>&1 &&
  ! psql -h 127.0.0.1 -U postgres -d postgres -qAtX -w -c 'SELECT 1' >/dev/null 2>&1; then
  echo "postgresql: answers, but user postgres cannot log in on 127.0.0.1 without a password; put one in DATABASE_URL (postgres://postgres:PASSWORD@127.0.0.1:5432/postgres)"
fi
