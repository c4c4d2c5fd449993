#!/usr/bin/env bash
# Chaos run: publishes N positions at a steady rate (with duplicates and invalid entries) while
# SIGKILLing and restarting the processor K times at random moments, then checks that the table
# holds exactly the distinct valid (device_id, ts) published, nothing is pending, and every
# invalid entry is in the dead-letter stream.
#
# Usage: scripts/chaos.sh [N] [K] [RATE_PER_SEC]      (defaults 20000 5 5000)
# Env:   PROCESSOR_BIN (default target/release/processor, else target/debug/processor),
#        REDIS_HOST/REDIS_PORT (127.0.0.1:6379), PGHOST/PGPORT/PGUSER (127.0.0.1:5432 postgres),
#        WORKERS (2), SEED (random)
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-20000}; K=${2:-5}; RATE=${3:-5000}
WORKERS=${WORKERS:-2}
REDIS_HOST=${REDIS_HOST:-127.0.0.1}; REDIS_PORT=${REDIS_PORT:-6379}
export PGHOST=${PGHOST:-127.0.0.1} PGPORT=${PGPORT:-5432} PGUSER=${PGUSER:-postgres}
BIN=${PROCESSOR_BIN:-}
if [ -z "$BIN" ]; then
  if [ -x target/release/processor ]; then BIN=target/release/processor; else BIN=target/debug/processor; fi
fi
[ -x "$BIN" ] || { echo "chaos: build the processor first (cargo build --release)"; exit 2; }
SEED=${SEED:-$RANDOM}
run="chaos_$(date +%s)_$$"
stream="$run:t"; group="$run-g"; schema="$run"; dead="$stream:dead"
work=$(mktemp -d)
rcli() { redis-cli -h "$REDIS_HOST" -p "$REDIS_PORT" "$@"; }
psql -qAt -c "CREATE SCHEMA $schema" >/dev/null

start_processor() {
  REDIS_URL="redis://$REDIS_HOST:$REDIS_PORT" \
  DATABASE_URL="postgres://$PGUSER@$PGHOST:$PGPORT/postgres?options=-csearch_path%3D$schema" \
  STREAM_KEY="$stream" CONSUMER_GROUP="$group" CONSUMER_NAME="$run" WORKERS="$WORKERS" \
  HTTP_ADDR=127.0.0.1:0 EPOCH_MS=20 READ_BLOCK_MS=200 RETRY_MAX_MS=500 \
  CLAIM_MIN_IDLE_MS=2000 CLAIM_INTERVAL_MS=1000 RUST_LOG=warn \
    "$BIN" >>"$work/processor.log" 2>&1 &
  echo $!
}

cleanup() {
  [ -n "${pid:-}" ] && kill -9 "$pid" 2>/dev/null || true
  [ -n "${publisher:-}" ] && kill "$publisher" 2>/dev/null || true
}
trap cleanup EXIT

# The publisher: steady RATE, ~2% duplicates, ~1% invalid; writes the expected figures at the end.
python3 - "$N" "$RATE" "$stream" "$SEED" "$work/expected" <<'PY' | rcli --pipe >"$work/publish.log" 2>&1 &
import random, sys, time
n, rate, stream, seed, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), sys.argv[5]
rng = random.Random(seed)
def resp(*args):
    parts = [b"*%d\r\n" % len(args)]
    for a in args:
        a = a.encode() if isinstance(a, str) else a
        parts.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(parts)
keys, invalid, sent = set(), 0, []
base = 1_790_000_000_000
tick = max(1, rate // 20)
start = time.time()
for i in range(n):
    r = rng.random()
    if r < 0.01:
        payload = '{"device_id":"bad","timestamp":"yesterday","latitude":1,"longitude":1}'
        invalid += 1
    elif r < 0.03 and sent:
        payload = rng.choice(sent)
    else:
        device = "chaos-%04d" % rng.randrange(1000)
        ts = base + i * 10
        payload = ('{"device_id":"%s","timestamp":%d,"latitude":%.6f,"longitude":%.6f,'
                   '"attributes":{"16":{"__bigint":"%d"},"78":{"__buffer_b64":"AQID"}}}'
                   % (device, ts, rng.uniform(-90, 90), rng.uniform(-180, 180), rng.getrandbits(70)))
        keys.add((device, ts))
        sent.append(payload)
        if len(sent) > 1000:
            sent.pop(0)
    sys.stdout.buffer.write(resp("XADD", stream, "*", "payload", payload))
    if (i + 1) % tick == 0:
        sys.stdout.buffer.flush()
        ahead = (i + 1) / rate - (time.time() - start)
        if ahead > 0:
            time.sleep(ahead)
sys.stdout.buffer.flush()
open(out, "w").write(f"{len(keys)} {invalid}\n")
PY
publisher=$!

pid=$(start_processor)
for k in $(seq 1 "$K"); do
  sleep "$(python3 -c "import random; print(round(random.uniform(0.3, 1.5), 2))")"
  kill -9 "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  echo "chaos: kill $k/$K at $(rcli XLEN "$stream") published"
  pid=$(start_processor)
done
wait "$publisher"
read -r want_rows want_dead <"$work/expected"

deadline=$(( $(date +%s) + 180 ))
while :; do
  rows=$(psql -qAt -c "SELECT count(*) FROM $schema.positions" 2>/dev/null || echo 0)
  pending=$(rcli XPENDING "$stream" "$group" | head -1)
  dead_len=$(rcli XLEN "$dead")
  if [ "$rows" = "$want_rows" ] && [ "$pending" = "0" ] && [ "$dead_len" -ge "$want_dead" ]; then break; fi
  if [ "$(date +%s)" -gt "$deadline" ]; then break; fi
  sleep 0.5
done
distinct=$(psql -qAt -c "SELECT count(DISTINCT (device_id, ts)) FROM $schema.positions")
dead_ids=$(rcli --raw XRANGE "$dead" - + | awk 'prev=="source_id"{print} {prev=$0}' | sort -u | wc -l)
echo "chaos: N=$N K=$K rate=$RATE: rows=$rows (want $want_rows, distinct $distinct), pending=$pending, dead-lettered ids=$dead_ids (want $want_dead)"
kill -TERM "$pid" 2>/dev/null || true
wait "$pid" 2>/dev/null || true
pid=
rcli DEL "$stream" "$dead" >/dev/null
psql -qAt -c "DROP SCHEMA $schema CASCADE" >/dev/null
if [ "$rows" = "$want_rows" ] && [ "$distinct" = "$want_rows" ] && [ "$pending" = "0" ] && [ "$dead_ids" = "$want_dead" ]; then
  echo "chaos: PASS"
else
  echo "chaos: FAIL (processor log: $work/processor.log)"
  exit 1
fi
