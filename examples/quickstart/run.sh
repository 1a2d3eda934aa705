#!/usr/bin/env bash
# Builds the proxy, starts a small backend and the proxy on the routes file
# of this example (no Redis needed), sends a request through it, then stops
# both. Pass --keep to leave them running until Ctrl-C.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
cd "$root"
cargo build --release -p hipache --bin hipache
bin="${CARGO_TARGET_DIR:-$root/target}/release/hipache"

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

python3 -m http.server 8081 --bind 127.0.0.1 --directory "$here/www" >/dev/null 2>&1 &
pids+=($!)
"$bin" --config "$here/config.yaml" &
pids+=($!)

for _ in $(seq 50); do
  if curl -s -o /dev/null "http://127.0.0.1:8080/" -H 'Host: __ping__' && curl -s -o /dev/null http://127.0.0.1:8081/; then break; fi
  sleep 0.1
done
echo "--- curl -i -H 'X-Debug: 1' http://localhost:8080/"
curl -s -i -H 'X-Debug: 1' http://localhost:8080/
if [ "${1:-}" = "--keep" ]; then
  echo "--- proxy on http://localhost:8080 (Ctrl-C to stop)"
  wait
fi
