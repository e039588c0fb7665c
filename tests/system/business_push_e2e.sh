#!/usr/bin/env bash
# System test of business_push_client against `flare serve embedded` with two chatroom_clients online:
# a broadcast reaches both, USER_IDS=user1 reaches only user1, a named user who was offline gets the
# push on connect, and an unreachable gateway or a refused call exits non-zero with a clear message.
set -euo pipefail
BIN=${1:?usage: business_push_e2e.sh BUILD_BIN_DIR}
WORK=$(mktemp -d /tmp/flare-bpe2e.XXXXXX)
export TOKEN_SECRET=bp-secret
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill -9 "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"

PORT=0 LISTEN_ADDRESS=127.0.0.1 CORE_GATEWAY_GRPC_PORT=0 CORE_GATEWAY_HTTP_PORT=0 DATABASE_URL="sqlite://$WORK/f.db" \
    "$BIN/flare" serve embedded --ready-file "$WORK/ready" >"$WORK/server.log" 2>&1 &
PIDS+=($!)
wait_for 10 test -s "$WORK/ready" || fail "server did not become ready"
WS=$(head -n 1 "$WORK/ready")
GRPC=$(sed -n 's/^grpc_port=//p' "$WORK/ready")
export NEGOTIATION_HOST=127.0.0.1:$WS GATEWAY_ENDPOINT=http://127.0.0.1:$GRPC

mkfifo "$WORK/in1" "$WORK/in2"
"$BIN/chatroom_client" user1 <"$WORK/in1" >"$WORK/u1.out" 2>"$WORK/u1.err" &
PIDS+=($!)
"$BIN/chatroom_client" user2 <"$WORK/in2" >"$WORK/u2.out" 2>"$WORK/u2.err" &
PIDS+=($!)
exec 3>"$WORK/in1" 4>"$WORK/in2"
wait_for 10 grep -q "joined room" "$WORK/u1.err" || fail "user1 did not connect"
wait_for 10 grep -q "joined room" "$WORK/u2.err" || fail "user2 did not connect"

MESSAGE_CONTENT="to everyone online" "$BIN/business_push_client" >"$WORK/push1.out" || fail "broadcast push failed"
grep -Eq "online users +\| +2 \|" "$WORK/push1.out" || fail "broadcast did not count 2 online users"
wait_for 10 grep -q "\[broadcast\] \[system\] business-system: to everyone online" "$WORK/u1.out" || fail "user1 missed the broadcast"
wait_for 10 grep -q "\[broadcast\] \[system\] business-system: to everyone online" "$WORK/u2.out" || fail "user2 missed the broadcast"
echo "broadcast reached both clients: ok"

USER_IDS=user1 MESSAGE_CONTENT="only for user1" "$BIN/business_push_client" >"$WORK/push2.out" || fail "named push failed"
wait_for 10 grep -q "\[system\] business-system: only for user1" "$WORK/u1.out" || fail "user1 missed its push"
sleep 0.3  # give a wrong delivery the chance to show
if grep -q "only for user1" "$WORK/u2.out"; then fail "user2 got user1's push"; fi
echo "USER_IDS=user1 reached only user1: ok"

USER_IDS=user3 MESSAGE_CONTENT="for offline user3" "$BIN/business_push_client" >"$WORK/push3.out" || fail "offline push failed"
grep -Eq "offline users +\| +1 \|" "$WORK/push3.out" || fail "user3 was not reported offline"
"$BIN/chatroom_client" user3 --quiet </dev/null >"$WORK/u3.out" || fail "user3 failed"
grep -q "\[system\] business-system: for offline user3" "$WORK/u3.out" || fail "offline user3 did not get the push on connect"
echo "offline user got the push on connect: ok"

if GATEWAY_ENDPOINT=http://127.0.0.1:1 "$BIN/business_push_client" >/dev/null 2>"$WORK/down.err"; then
    fail "push to an unreachable gateway succeeded"
fi
grep -q "cannot reach the core gateway" "$WORK/down.err" || fail "no clear message for an unreachable gateway"
if TOKEN_SECRET=wrong "$BIN/business_push_client" >/dev/null 2>"$WORK/refused.err"; then
    fail "push with a wrong secret succeeded"
fi
grep -q "refused the push: UNAUTHENTICATED" "$WORK/refused.err" || fail "no clear message for a refused push"
echo "unreachable and refused calls exit non-zero with a message: ok"
exec 3>&- 4>&-
echo "1 passed, 0 failed"
