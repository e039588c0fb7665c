#!/usr/bin/env bash
# A small run of every flare-bench scenario against `flare serve embedded`: it checks what was
# delivered (counts, order, no duplicates), not speed. Benchmarks proper are in docs/BENCHMARKS.md.
set -euo pipefail
BIN=${1:?usage: bench_smoke.sh BUILD_BIN_DIR}
WORK=$(mktemp -d /tmp/flare-bench-smoke.XXXXXX)
SERVER=""
cleanup() {
    [[ -n $SERVER ]] && kill "$SERVER" 2>/dev/null && wait "$SERVER" 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"

PORT=0 LISTEN_ADDRESS=127.0.0.1 CORE_GATEWAY_GRPC_PORT=0 CORE_GATEWAY_HTTP_PORT=0 LOG_LEVEL=warn \
    DATABASE_URL="sqlite://$WORK/f.db" "$BIN/flare" serve embedded --ready-file "$WORK/ready" >"$WORK/server.log" 2>&1 &
SERVER=$!
wait_for 10 test -s "$WORK/ready" || fail "server did not become ready"
P=$(head -n 1 "$WORK/ready")
B=("$BIN/flare-bench")
run() {
    local name=$1; shift
    "${B[@]}" "$name" --port "$P" --server-pid "$SERVER" "$@" >"$WORK/$name.out" 2>&1 || fail "flare-bench $name failed"
    grep -q '"ok":true' "$WORK/$name.out" || fail "flare-bench $name did not verify"
    echo "$name: $(tail -n 1 "$WORK/$name.out")"
}
run direct --pairs 5 --max-messages 2000 --duration 10
run direct --pairs 5 --rate 500 --max-messages 500 --duration 10
run room --members 20 --rate 200 --max-messages 100 --duration 10
run idle --connections 200 --duration 1
run churn --users 10 --rate 300 --max-messages 300 --duration 10
# A bad target is refused before anything is sent.
if "${B[@]}" direct --host 10.0.0.1 >/dev/null 2>&1; then fail "flare-bench accepted a non-loopback target"; fi
echo "1 passed, 0 failed"
