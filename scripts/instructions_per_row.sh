#!/usr/bin/env bash
# The processor's user-space instructions per row, counted by valgrind's callgrind: a measure that
# does not move with the host's load (timings here drift by a third within a session), for
# comparing two builds of the processor on the same rows.
#
#   scripts/instructions_per_row.sh [BINARY] [PROFILE] [COUNT]
#   scripts/instructions_per_row.sh target/release/processor fmb 100000
#
# Publishes COUNT `processor simulate` records of PROFILE (fmb or mixed; 10,000 devices, seed 1)
# into a fresh stream, runs BINARY under callgrind with WORKERS=1 into a fresh schema until every
# entry is acknowledged, stops it with SIGTERM and prints the instructions of the whole process
# (start-up and drain included) divided by COUNT. Kernel work (system calls, page faults) is not
# counted, and neither are cache misses: read it beside the timed bench (scripts/bench.py), not
# instead of it. A run takes about 15 s per 100,000 rows. Needs valgrind, psql, redis-cli, curl,
# and Redis and PostgreSQL as the tests use them (PGHOST/PGPORT/PGUSER, REDIS_URL).
set -euo pipefail

BINARY=${1:-target/release/processor}
PROFILE=${2:-fmb}
COUNT=${3:-100000}
SIMULATOR=${SIMULATOR:-target/release/processor}
REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379}
export PGHOST=${PGHOST:-127.0.0.1} PGPORT=${PGPORT:-5432} PGUSER=${PGUSER:-postgres}
PORT=${PORT:-19193}

TAG="ipr_$(date +%s%N)"
SCHEMA=$TAG
STREAM="$TAG:t"
OUT=$(mktemp -d)
cleanup() {
    redis-cli -u "$REDIS_URL" DEL "$STREAM" "$STREAM:dead" >/dev/null || true
    psql -q -d postgres -c "DROP SCHEMA IF EXISTS $SCHEMA CASCADE" 2>/dev/null || true
    rm -rf "$OUT"
}
trap cleanup EXIT

psql -q -d postgres -c "CREATE SCHEMA $SCHEMA"
REDIS_URL=$REDIS_URL STREAM_KEY=$STREAM "$SIMULATOR" simulate --count "$COUNT" \
    --profile "$PROFILE" --devices 10000 --seed 1 --rate 0 >/dev/null 2>&1

DATABASE_URL="postgres://$PGUSER@$PGHOST:$PGPORT/postgres?options=-csearch_path%3D$SCHEMA" \
    REDIS_URL=$REDIS_URL STREAM_KEY=$STREAM CONSUMER_GROUP=bench HTTP_ADDR=127.0.0.1:$PORT \
    WORKERS=1 MIMALLOC_ARENA_EAGER_COMMIT=0 RUST_LOG=warn \
    valgrind --tool=callgrind --callgrind-out-file="$OUT/callgrind.out" "$BINARY" \
    >/dev/null 2>"$OUT/valgrind.log" &
RUNNING=$!
acked=0
for _ in $(seq 1 2400); do
    sleep 0.5
    acked=$(curl -s "127.0.0.1:$PORT/metrics" 2>/dev/null \
        | awk '/^processor_entries_acked_total / {print $2}') || true
    [ "$acked" = "$COUNT" ] && break
done
kill -TERM "$RUNNING"
wait "$RUNNING" || true
if [ "$acked" != "$COUNT" ]; then
    echo "instructions_per_row: only ${acked:-0} of $COUNT entries were acknowledged" >&2
    exit 1
fi
awk -v count="$COUNT" -v profile="$PROFILE" '/Collected/ {
    gsub(",", "", $4); printf "%s: %.0f instructions per row\n", profile, $4 / count }' \
    "$OUT/valgrind.log"
