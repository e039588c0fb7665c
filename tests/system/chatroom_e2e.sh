#!/usr/bin/env bash
# System test of the real binaries: two chatroom_clients talk both ways through `flare serve embedded`;
# the server is killed with SIGKILL mid-conversation and restarted; the clients reconnect, resend what
# was not acknowledged and catch up; every acknowledged message survives the crash exactly once, in order.
set -euo pipefail
BIN=${1:?usage: chatroom_e2e.sh BUILD_BIN_DIR}
WORK=$(mktemp -d /tmp/flare-e2e.XXXXXX)
export TOKEN_SECRET=e2e-secret
SERVER_PID="" ; C1_PID="" ; C2_PID=""
cleanup() {
    for pid in $C1_PID $C2_PID $SERVER_PID; do kill -9 "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    if [[ ${KEEP:-0} == 1 ]]; then echo "kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"


start_server() {  # start_server PORT
    rm -f "$WORK/ready"
    PORT=$1 LISTEN_ADDRESS=127.0.0.1 GATEWAY_ID=gw-e2e CORE_GATEWAY_GRPC_PORT=0 CORE_GATEWAY_HTTP_PORT=0 DATABASE_URL="sqlite://$WORK/flare.db" \
        "$BIN/flare" serve embedded --ready-file "$WORK/ready" >>"$WORK/server.log" 2>&1 3>&- 4>&- &
    SERVER_PID=$!
    wait_for 10 test -s "$WORK/ready" || fail "server did not become ready"
    PORT_USED=$(head -n 1 "$WORK/ready")
}

start_server 0
P=$PORT_USED
export NEGOTIATION_HOST=127.0.0.1:$P
echo "server on port $P"

mkfifo "$WORK/in1" "$WORK/in2"
"$BIN/chatroom_client" user1 --room e2e --history 0 <"$WORK/in1" >"$WORK/u1.out" 2>"$WORK/u1.err" &
C1_PID=$!
"$BIN/chatroom_client" user2 --room e2e --history 0 <"$WORK/in2" >"$WORK/u2.out" 2>"$WORK/u2.err" &
C2_PID=$!
exec 3>"$WORK/in1" 4>"$WORK/in2"
wait_for 10 grep -q "joined room e2e" "$WORK/u1.err" || fail "user1 did not join"
wait_for 10 grep -q "joined room e2e" "$WORK/u2.err" || fail "user2 did not join"

echo "hello from user1" >&3
wait_for 10 grep -q "user1: hello from user1" "$WORK/u2.out" || fail "user2 did not get user1's message"
echo "hello from user2" >&4
wait_for 10 grep -q "user2: hello from user2" "$WORK/u1.out" || fail "user1 did not get user2's message"
echo "live exchange both ways: ok"

kill -9 "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null || true
echo "sent while the server is down" >&3
sleep 0.3  # let the client notice the outage and hold the line as pending
start_server "$P"
wait_for 20 grep -q "user1: sent while the server is down" "$WORK/u2.out" || fail "message written during the outage was not delivered"
echo "reconnect after kill -9, pending send retried: ok"

for i in $(seq 1 50); do echo "bulk $i" >&3; done
wait_for 20 grep -q "user1: bulk 50$" "$WORK/u2.out" || fail "bulk messages did not all arrive"
exec 3>&- 4>&-
wait "$C1_PID" || fail "user1 exited non-zero"
wait "$C2_PID" || fail "user2 exited non-zero"
C1_PID=""; C2_PID=""

# user2 saw every message once, in order.
texts() { sed -E 's/^\[[0-9:]+\] (#[0-9]+ )?//' "$1"; }
expected=$(printf 'user1: hello from user1\nuser2: hello from user2\nuser1: sent while the server is down\n'; for i in $(seq 1 50); do echo "user1: bulk $i"; done)
[[ "$(texts "$WORK/u2.out")" == "$expected" ]] || { diff <(echo "$expected") <(texts "$WORK/u2.out") || true; fail "user2's transcript is not exact"; }
[[ "$(texts "$WORK/u1.out")" == "$expected" ]] || { diff <(echo "$expected") <(texts "$WORK/u1.out") || true; fail "user1's transcript is not exact"; }
echo "transcripts exact (no gap, no duplicate, in order): ok"

# Every acknowledged message survives a crash right after its acknowledgement.
seq 1 100 | sed 's/^/acked /' | "$BIN/chatroom_client" user3 --room e2e --history 0 --quiet >"$WORK/u3.out" \
    || fail "user3 did not get every send acknowledged"
kill -9 "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null || true
start_server "$P"
"$BIN/chatroom_client" user4 --room e2e --history 100000 --quiet </dev/null >"$WORK/u4.out" || fail "user4 failed"
got=$(texts "$WORK/u4.out" | grep '^user3: ' || true)
want=$(for i in $(seq 1 100); do echo "user3: acked $i"; done)
[[ "$got" == "$want" ]] || { diff <(echo "$want") <(echo "$got") | head || true; fail "acknowledged messages lost or duplicated after kill -9"; }
total=$(wc -l <"$WORK/u4.out")
[[ $total -eq 153 ]] || fail "history has $total messages, expected 153"
echo "100 acknowledged messages survived kill -9: ok"

# Bad input on the command line is explained.
if "$BIN/chatroom_client" 2>"$WORK/usage.err"; then fail "chatroom_client without USER succeeded"; fi
grep -q "USER is required" "$WORK/usage.err" || fail "no usage message"
if NEGOTIATION_HOST=127.0.0.1:1 "$BIN/chatroom_client" user5 </dev/null 2>"$WORK/down.err" & then
    DOWN_PID=$!
fi
wait_for 5 grep -q "reconnecting" "$WORK/down.err" || fail "an unreachable gateway was not reported"
kill "$DOWN_PID" 2>/dev/null || true
echo "1 passed, 0 failed"
