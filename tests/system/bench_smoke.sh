#!/usr/bin/env bash
# A small run of every flare-bench scenario against `flare serve embedded`: it checks what was
# delivered (counts, order, no duplicates), not speed. Benchmarks proper are in docs/BENCHMARKS.md.
set -euo pipefail
BIN=${1:?usage: bench_smoke.sh BUILD_BIN_DIR}
WORK=$(mktemp -d /tmp/flare-bench-smoke.XXXXXX)
SERVER="" HOOKED="" RECEIVER=""
cleanup() {
    for p in $SERVER $HOOKED $RECEIVER; do
        kill "$p" 2>/dev/null && wait "$p" 2>/dev/null || true
    done
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
# The pre_send webhook path: flare-bench's receiver (port 0, read back from its first line), a
# server with a webhook hook on it, a small direct run; every call must be signed and answered.
"${B[@]}" webhook --port 0 --duration 60 >"$WORK/webhook.out" 2>"$WORK/webhook.err" &
RECEIVER=$!
wait_for 10 grep -q "webhook receiver on" "$WORK/webhook.err" || fail "the webhook receiver did not start"
HP=$(sed -n 's|.*http://127.0.0.1:\([0-9]*\)/.*|\1|p' "$WORK/webhook.err")
printf '[[hook]]\nname = "smoke"\npoints = ["pre_send"]\ntransport = "webhook"\nurl = "http://127.0.0.1:%s/check"\nsecret = "s"\nfailure = "closed"\n' \
    "$HP" >"$WORK/hooks.toml"
HOOKS_FILE="$WORK/hooks.toml" PORT=0 LISTEN_ADDRESS=127.0.0.1 CORE_GATEWAY_GRPC_PORT=0 CORE_GATEWAY_HTTP_PORT=0 \
    LOG_LEVEL=warn DATABASE_URL="sqlite://$WORK/h.db" "$BIN/flare" serve embedded --ready-file "$WORK/ready2" \
    >"$WORK/hooked.log" 2>&1 &
HOOKED=$!
wait_for 10 test -s "$WORK/ready2" || fail "the server with a webhook did not become ready"
"${B[@]}" direct --port "$(head -n 1 "$WORK/ready2")" --pairs 5 --max-messages 1000 --duration 10 >"$WORK/hooked.out" 2>&1 ||
    fail "flare-bench direct through a webhook failed: $(cat "$WORK/hooked.out")"
grep -q '"ok":true' "$WORK/hooked.out" || fail "flare-bench direct through a webhook did not verify"
kill -TERM "$RECEIVER" && wait "$RECEIVER" || fail "the webhook receiver failed: $(cat "$WORK/webhook.out")"
RECEIVER=""
requests=$(sed -n 's/.*"requests":\([0-9]*\).*/\1/p' "$WORK/webhook.out")
conns=$(sed -n 's/.*"connections_accepted":\([0-9]*\).*/\1/p' "$WORK/webhook.out")
[[ $requests -ge 1000 ]] || fail "the webhook saw $requests calls for 1000 messages"
[[ $conns -le 20 ]] || fail "the webhook calls used $conns connections (kept alive: at most a few per conversation)"
echo "webhook: $requests calls over $conns connections"
# A bad target is refused before anything is sent.
if "${B[@]}" direct --host 10.0.0.1 >/dev/null 2>&1; then fail "flare-bench accepted a non-loopback target"; fi
echo "1 passed, 0 failed"
