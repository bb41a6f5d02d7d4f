#!/usr/bin/env bash
# Evaluate under h2load (8 connections x 16 streams), next to the do-nothing
# tonic server of benches/compare.rs, one after the other; prints calls/s and
# each server's CPU per call. Needs h2load (Debian: nghttp2-client).
#   benches/h2load.sh [requests]     # default 200000 per server
set -euo pipefail
cd "$(dirname "$0")/.."
requests="${1:-200000}"
cargo build --release --quiet --bin governance-sidecar
compare=$(cargo bench --bench compare --no-run 2>&1 | grep -o 'target/release/deps/compare-[0-9a-f]*' | head -1)
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT

# One gRPC message: EvaluateRequest{request_json (2), idempotency_key (3)}, length-prefixed.
python3 - "$work/frame" <<'PY'
import sys
def field(number, text):
    data = text.encode()
    length, varint = len(data), b""
    while True:
        byte = length & 0x7F
        length >>= 7
        varint += bytes([byte | (0x80 if length else 0)])
        if not length:
            break
    return bytes([number << 3 | 2]) + varint + data
message = field(2, open("benches/requests/approved.json").read()) + field(3, "bench-key")
open(sys.argv[1], "wb").write(b"\0" + len(message).to_bytes(4, "big") + message)
PY

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
measure() { # name pid port
  local before after
  for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$3") 2>/dev/null && break; sleep 0.05; done
  before=$(cpu_ticks "$2")
  h2load -c 8 -m 16 -n "$requests" -d "$work/frame" -H 'content-type: application/grpc' -H 'te: trailers' \
    "http://127.0.0.1:$3/governance.v1.Governance/Evaluate" > "$work/$1.out"
  after=$(cpu_ticks "$2")
  local rate; rate=$(awk '/^finished in/ {print $4}' "$work/$1.out")
  local ok; ok=$(awk '/^status codes:/ {print $3}' "$work/$1.out")
  echo "$1: $rate req/s, $ok answered 200 of $requests, CPU $(( (after - before) * 10000 * 1000 / requests / 1000 )) µs/call"
}

GOVERNANCE_BENCH_FLOOR_PORT=50151 "$compare" & floor=$!
measure "do-nothing tonic server" "$floor" 50151
kill "$floor"
RUST_LOG=warn target/release/governance-sidecar serve --listen 127.0.0.1:50152 > /dev/null & sidecar=$!
measure "sidecar Evaluate" "$sidecar" 50152
