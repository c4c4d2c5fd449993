#!/usr/bin/env bash
# Fuzzes the codec with cargo fuzz (libFuzzer). Seeds the corpus with the fixtures' payloads.
# Usage: scripts/fuzz.sh [SECONDS]   (default 600)
# Needs: cargo install cargo-fuzz. On a stable toolchain RUSTC_BOOTSTRAP=1 lets cargo fuzz use
# the nightly-only sanitizer flags.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-600}
mkdir -p fuzz/corpus/codec
python3 - <<'PY'
import hashlib, json
for name in ("tests/fixtures/valid.jsonl", "tests/fixtures/invalid.jsonl"):
    for line in open(name):
        if not line.strip():
            continue
        payload = json.loads(line)["fields"].get("payload")
        if payload is not None:
            digest = hashlib.sha1(payload.encode()).hexdigest()
            open(f"fuzz/corpus/codec/{digest}", "w").write(payload)
PY
cd fuzz
RUSTC_BOOTSTRAP=1 cargo fuzz run codec corpus/codec -- -max_total_time="$seconds" -rss_limit_mb=2048
