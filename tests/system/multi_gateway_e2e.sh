#!/usr/bin/env bash
# System test of the distributed deployment, driven through the operator scripts on the guide's ports:
#   start_multi_gateway.sh brings up Redis, PostgreSQL, etcd, NATS and the ten service processes;
#   check_services.sh passes; user1 on gateway-beijing-1 (60051) and user2 on gateway-shanghai-1
#   (60052) chat both ways; business_push_client reaches both; push-server and storage-writer are
#   killed with SIGKILL mid-stream and restarted, and every acknowledged message is then delivered
#   exactly once, in order, and stored exactly once with dense seqs; Redis is stopped for a few
#   seconds and the gateways recover; a user with devices on both gateways gets messages on both; a
#   gateway killed with SIGKILL drops its users from presence within their TTL; the conversation
#   operation scenarios (flare_ops_tests) pass across the two gateways; stop_multi_gateway.sh
#   leaves no process behind.
set -euo pipefail
BIN=${1:?usage: multi_gateway_e2e.sh BUILD_BIN_DIR}
BIN=$(cd "$BIN" && pwd)
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
WORK=$(mktemp -d /tmp/flare-multi-e2e.XXXXXX)
chmod 755 "$WORK"  # PostgreSQL runs as user postgres and must reach its data directory inside
export FLARE_BIN_DIR=$BIN FLARE_STATE_DIR=$WORK/state FLARE_LOG_DIR=$WORK TOKEN_SECRET=multi-e2e-secret
export PRESENCE_TTL_MS=3000 LOG_LEVEL=info
# What the conversation-operation scenarios (flare_ops_tests) expect of the deployment.
export RECALL_WINDOW_MS=1000 LARGE_GROUP_MEMBERS=3
# hook-engine's hooks file: a keyword filter at pre_send.
cat >"$WORK/hooks.toml" <<'TOML'
[[hook]]
name = "e2e-filter"
points = ["pre_send"]
transport = "keyword_filter"
keywords = ["forbidden-word"]

[[hook]]
name = "e2e-mask"
points = ["pre_send"]
transport = "keyword_filter"
keywords = ["darn"]
mask = true
TOML
export HOOKS_FILE=$WORK/hooks.toml
C1_PID="" C2_PID="" C3_PID=""
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
cleanup() {
    exec 3>&- 4>&- 5>&- 6>&- 2>/dev/null || true
    for pid in $C1_PID $C2_PID $C3_PID; do kill -9 "$pid" 2>/dev/null || true; done
    "$ROOT/scripts/stop_multi_gateway.sh" >/dev/null 2>&1 || true
    if [[ ${KEEP:-0} == 1 ]]; then echo "kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
psql_flare() {
    PGPASSWORD=flare123 psql -h 127.0.0.1 -p 25432 -U flare -d flare -tA -c "$1"
}
count_line() {  # count_line FILE REGEX: lines matching
    grep -cE "$2" "$1" || true
}

"$ROOT/scripts/start_multi_gateway.sh" >"$WORK/start.out" 2>&1 || fail "start_multi_gateway.sh failed: $(tail -n 20 "$WORK/start.out")"
"$ROOT/scripts/check_services.sh" >"$WORK/check.out" 2>&1 || fail "check_services.sh failed: $(grep FAIL "$WORK/check.out")"
echo "start_multi_gateway.sh and check_services.sh: ok"

mkfifo "$WORK/in1" "$WORK/in2"
NEGOTIATION_HOST=127.0.0.1:60051 "$BIN/chatroom_client" user1 --room lobby --history 0 <"$WORK/in1" >"$WORK/u1.out" 2>"$WORK/u1.err" &
C1_PID=$!
NEGOTIATION_HOST=127.0.0.1:60052 "$BIN/chatroom_client" user2 --room lobby --history 0 <"$WORK/in2" >"$WORK/u2.out" 2>"$WORK/u2.err" &
C2_PID=$!
exec 3>"$WORK/in1" 4>"$WORK/in2"
wait_for 15 grep -q "connected to gateway-beijing-1" "$WORK/u1.err" || fail "user1 did not connect to gateway-beijing-1"
wait_for 15 grep -q "connected to gateway-shanghai-1" "$WORK/u2.err" || fail "user2 did not connect to gateway-shanghai-1"
wait_for 15 grep -q "joined room lobby" "$WORK/u1.err" || fail "user1 did not join"
wait_for 15 grep -q "joined room lobby" "$WORK/u2.err" || fail "user2 did not join"

echo "hello from beijing" >&3
wait_for 15 grep -q "user1: hello from beijing" "$WORK/u2.out" || fail "user2 (shanghai) did not get user1's message"
echo "hello from shanghai" >&4
wait_for 15 grep -q "user2: hello from shanghai" "$WORK/u1.out" || fail "user1 (beijing) did not get user2's message"
echo "cross-region chat both ways: ok"

MESSAGE_CONTENT="broadcast to all" GATEWAY_ENDPOINT=http://127.0.0.1:50050 "$BIN/business_push_client" >"$WORK/push1.out" 2>&1 3>&- 4>&- ||
    fail "business_push_client (broadcast) failed: $(cat "$WORK/push1.out")"
USER_IDS=user1,user2 MESSAGE_CONTENT="named push" "$BIN/business_push_client" >"$WORK/push2.out" 2>&1 3>&- 4>&- ||
    fail "business_push_client (named) failed: $(cat "$WORK/push2.out")"
for u in u1 u2; do
    wait_for 15 grep -q "\[broadcast\] \[system\] business-system: broadcast to all" "$WORK/$u.out" || fail "$u missed the broadcast"
    wait_for 15 grep -q "\[system\] business-system: named push" "$WORK/$u.out" || fail "$u missed the named push"
done
echo "business_push_client reaches both gateways: ok"

# Groups, unread counts, receipts, recall, edit, reactions, typing, mentions: the same scenarios as
# against the embedded server, here across the beijing and shanghai gateways.
FLARE_OPS_GATEWAYS=60051,60052 FLARE_OPS_TOKEN_SECRET=$TOKEN_SECRET "$BIN/flare_ops_tests" \
    >"$WORK/ops.out" 2>&1 3>&- 4>&- || fail "conversation operations failed in the distributed deployment: $(grep -E 'FAILED|Failure|Expected|Which is|error' "$WORK/ops.out" | head -n 30)"
echo "conversation operations across both gateways ($(grep -c '^\[       OK' "$WORK/ops.out") scenarios): ok"

# Hooks: the orchestrator asks hook-engine before storing. The file's keyword filter refuses a
# message; a hook put through the business API (core-gateway -> hook-engine, stored in PostgreSQL)
# applies within about a second; hook-engine's /metrics counts them.
printf 'a forbidden-word here\nthis one is fine\nwell darn\n' | NEGOTIATION_HOST=127.0.0.1:60052 "$BIN/chatroom_client" hooky --to user1 \
    --quiet >"$WORK/hook1.out" 2>"$WORK/hook1.err" 3>&- 4>&- && fail "a message with a forbidden word was accepted"
grep -q "rejected_by_hook" "$WORK/hook1.err" || fail "no rejected_by_hook for the forbidden word: $(cat "$WORK/hook1.err")"
grep -q "hooky: this one is fine" "$WORK/hook1.out" || fail "the allowed message did not go through: $(cat "$WORK/hook1.out")"
grep -q "hooky: well \*\*\*\*$" "$WORK/hook1.out" || fail "the sender does not see the masked text: $(cat "$WORK/hook1.out")"
grep -q "darn" "$WORK/hook1.out" && fail "the sender shows the text as typed, not as stored: $(cat "$WORK/hook1.out")"
BT_HOOK=$("$BIN/flare" token crm --role business)
put=$(curl -s -H "Authorization: Bearer $BT_HOOK" \
    -d '{"hook":{"name":"api-filter","points":["pre_send"],"transport":"keyword_filter","keywords":["refund"]}}' \
    http://127.0.0.1:50052/api/v1/PutHook)
[[ $put == "{}" ]] || fail "PutHook through core-gateway failed: $put"
sleep 1.5  # the services learn which points have hooks every second
printf 'I want a refund\n' | NEGOTIATION_HOST=127.0.0.1:60051 "$BIN/chatroom_client" hooky2 --to user1 \
    --quiet >"$WORK/hook2.out" 2>"$WORK/hook2.err" 3>&- 4>&- && fail "the API hook did not apply"
grep -q "rejected_by_hook" "$WORK/hook2.err" || fail "no rejected_by_hook from the API hook: $(cat "$WORK/hook2.err")"
listed=$(curl -s -H "Authorization: Bearer $BT_HOOK" -d '{}' http://127.0.0.1:50052/api/v1/ListHooks)
grep -q '"api-filter"' <<<"$listed" || fail "ListHooks does not show the hook: $listed"
hook_metrics=$(curl -s http://127.0.0.1:9210/metrics)
grep -q '^flare_hook_rejections_total{hook="e2e-filter",tenant=""} 1$' <<<"$hook_metrics" ||
    fail "hook-engine /metrics: $(grep flare_hook_rejections <<<"$hook_metrics")"
grep -q '^flare_hook_rejections_total{hook="api-filter",tenant="default"} 1$' <<<"$hook_metrics" ||
    fail "hook-engine /metrics: $(grep flare_hook_rejections <<<"$hook_metrics")"
curl -s -H "Authorization: Bearer $BT_HOOK" -d '{"name":"api-filter"}' http://127.0.0.1:50052/api/v1/DeleteHook >/dev/null
echo "hooks through hook-engine (file filter, API hook, metrics): ok"

# A stream of 300 messages; push-server and storage-writer die with SIGKILL in the middle of it.
N=300
(for i in $(seq 1 $N); do echo "stream $i"; sleep 0.01; done >&3) &
STREAM_PID=$!
wait_for 20 grep -q "user1: stream 60$" "$WORK/u2.out" || fail "the stream did not start"
kill -9 "$(<"$FLARE_STATE_DIR/push-server.pid")" "$(<"$FLARE_STATE_DIR/storage-writer.pid")"
echo "killed push-server and storage-writer (SIGKILL) after ~60 of $N messages"
sleep 1
# 3>&- 4>&-: servers started now must not inherit the clients' fifo writers (the clients would never
# see end of input).
"$ROOT/scripts/start_multi_gateway.sh" --service storage-writer >>"$WORK/start.out" 2>&1 3>&- 4>&- ||
    fail "storage-writer did not restart"
"$ROOT/scripts/start_multi_gateway.sh" --service push-server >>"$WORK/start.out" 2>&1 3>&- 4>&- ||
    fail "push-server did not restart"
wait "$STREAM_PID"
wait_for 90 grep -q "user1: stream $N$" "$WORK/u2.out" || fail "the stream did not complete after the restart"
got=$(count_line "$WORK/u2.out" "user1: stream [0-9]+$")
[[ $got == "$N" ]] || fail "user2 saw $got stream messages, expected exactly $N"
grep -oE "user1: stream [0-9]+$" "$WORK/u2.out" | awk '{print $3}' | awk -v n=$N '$1 != NR {print "position " NR " holds " $1; bad=1} END {exit bad}' ||
    fail "user2 saw the stream out of order or with duplicates"
own=$(count_line "$WORK/u1.out" "user1: stream [0-9]+$")
[[ $own == "$N" ]] || fail "user1's own transcript has $own stream messages, expected $N"
stored=$(psql_flare "SELECT count(*) || ' ' || count(DISTINCT text) FROM messages WHERE conversation_id = 'room:lobby' AND text LIKE 'stream %'")
[[ $stored == "$N $N" ]] || fail "stored stream messages (count, distinct): $stored; expected $N $N"
dense=$(psql_flare "SELECT count(*) = max(seq) AND min(seq) = 1 FROM messages WHERE conversation_id = 'room:lobby'")
[[ $dense == t ]] || fail "seqs of room:lobby are not dense 1..n"
echo "kill -9 of push-server and storage-writer: $N messages delivered exactly once, in order, stored exactly once, dense seqs: ok"

metrics=$(curl -s http://127.0.0.1:9191/metrics)
grep -q '^flare_up{role="push-server"} 1$' <<<"$metrics" || fail "push-server /metrics lacks flare_up: $metrics"
grep -q '^flare_push_known_gateways 2$' <<<"$metrics" || fail "push-server does not know both gateways: $metrics"
processed=$(curl -s http://127.0.0.1:9170/metrics | awk '/^flare_storage_writer_processed_total/ {print $2}')
[[ -n $processed && $processed -gt 0 ]] || fail "storage-writer /metrics counts no processed records"
echo "metrics: push-server knows 2 gateways, storage-writer processed $processed records since its restart: ok"

# Redis stops for a few seconds, longer than the presence TTL (3 s here): when it is back, the records
# have expired and the gateways' heartbeats write them again.
BT=$("$BIN/flare" token crm --role business)
status_of() {
    curl -s -H "Authorization: Bearer $BT" -d "{\"user_ids\":[\"$1\"]}" http://127.0.0.1:50052/api/v1/QueryUserStatus
}
redis_pid=$(<"$FLARE_STATE_DIR/infra/redis.pid")
kill -TERM "$redis_pid"
wait_for 10 bash -c "! kill -0 $redis_pid 2>/dev/null || grep -q '^State:.*Z' /proc/$redis_pid/status" || fail "redis did not stop"
echo "during the redis outage" >&3
sleep 3
"$ROOT/scripts/infra.sh" start "$FLARE_STATE_DIR/infra" --only redis >/dev/null 3>&- 4>&- || fail "redis did not restart"
echo "redis stopped for 3 s and restarted"
for u in user1 user2; do
    wait_for 30 bash -c "$(declare -f status_of); BT=$BT; status_of $u | grep -q gateway-" ||
        fail "$u is not online again after the redis outage: $(status_of $u)"
done
echo "after the redis outage" >&4
wait_for 30 grep -q "user2: after the redis outage" "$WORK/u1.out" || fail "no delivery after redis came back"
# Sent while presence was down: pushed live once push-server's retry finds the device again, or pulled
# by user2's client when its next message reveals the gap in seqs. Either way exactly once.
wait_for 30 grep -q "user1: during the redis outage" "$WORK/u2.out" || fail "a message sent during the redis outage never reached user2"
wait_for 30 "$ROOT/scripts/check_services.sh" >"$WORK/check2.out" 2>&1 3>&- 4>&- || fail "check_services.sh fails after the redis outage: $(grep FAIL "$WORK/check2.out")"
[[ $(count_line "$WORK/u2.out" "user1: during the redis outage") == 1 ]] || fail "the outage message arrived more than once"
[[ $(count_line "$WORK/u1.out" "user2: after the redis outage") == 1 ]] || fail "the message after the outage arrived more than once"
echo "redis outage: gateways recover, nothing lost or doubled: ok"

# A second device of user1, on the other gateway: it gets what user2 sends and what user1's first
# device sends.
mkfifo "$WORK/in3"
NEGOTIATION_HOST=127.0.0.1:60052 "$BIN/chatroom_client" user1 --device phone --room lobby --history 0 \
    <"$WORK/in3" >"$WORK/u1b.out" 2>"$WORK/u1b.err" 3>&- 4>&- &
C3_PID=$!
exec 5>"$WORK/in3"
wait_for 15 grep -q "joined room lobby" "$WORK/u1b.err" || fail "user1's second device did not join"
echo "to both of user1's devices" >&4
wait_for 15 grep -q "user2: to both of user1's devices" "$WORK/u1.out" || fail "user1's device on beijing missed it"
wait_for 15 grep -q "user2: to both of user1's devices" "$WORK/u1b.out" || fail "user1's device on shanghai missed it"
echo "from user1's first device" >&3
wait_for 15 grep -q "user1: from user1's first device" "$WORK/u1b.out" || fail "user1's other device missed its own message"
echo "a user with devices on both gateways gets messages on both: ok"

exec 3>&- 4>&- 5>&-
wait_for 30 bash -c "! kill -0 $C1_PID 2>/dev/null && ! kill -0 $C2_PID 2>/dev/null" ||
    fail "the chat clients did not finish after their input ended"
wait "$C1_PID" || fail "user1 exited non-zero"
wait "$C2_PID" || fail "user2 exited non-zero"
wait "$C3_PID" || fail "user1's second device exited non-zero"
C1_PID="" C2_PID="" C3_PID=""

# A gateway that crashes: its users are offline once their presence TTL (3 s here) runs out.
mkfifo "$WORK/in4"
NEGOTIATION_HOST=127.0.0.1:60052 "$BIN/chatroom_client" user3 --room lobby --history 0 <"$WORK/in4" \
    >"$WORK/u3.out" 2>"$WORK/u3.err" &
C3_PID=$!
exec 6>"$WORK/in4"  # held open: user3 stays connected until the end
wait_for 15 bash -c "$(declare -f status_of); BT=$BT; status_of user3 | grep -q gateway-shanghai-1" ||
    fail "user3 is not listed online on gateway-shanghai-1: $(status_of user3)"
kill -9 "$(<"$FLARE_STATE_DIR/access-gateway-gateway-shanghai-1.pid")"
killed_at=$SECONDS
wait_for 20 bash -c "$(declare -f status_of); BT=$BT; ! status_of user3 | grep -q gateway-shanghai-1" ||
    fail "user3 is still listed online 20 s after its gateway died: $(status_of user3)"
echo "crashed gateway: its users went offline after $((SECONDS - killed_at)) s (TTL 3 s): ok"
kill -9 "$C3_PID" 2>/dev/null || true
wait "$C3_PID" 2>/dev/null || true
exec 6>&-
C3_PID=""

"$ROOT/scripts/migrate_db.sh" >"$WORK/migrate.out" 2>&1 || fail "migrate_db.sh failed: $(cat "$WORK/migrate.out")"
grep -q "database is up to date" "$WORK/migrate.out" || fail "migrate_db.sh on a migrated database: $(cat "$WORK/migrate.out")"
[[ $(psql_flare "SELECT count(*) FROM messages WHERE conversation_id = 'room:lobby' AND text LIKE 'stream %'") == "$N" ]] ||
    fail "migrate_db.sh run again changed the stored messages"
echo "migrate_db.sh again: nothing to apply, nothing lost: ok"

pids=$(cat "$FLARE_STATE_DIR"/*.pid "$FLARE_STATE_DIR"/infra/*.pid 2>/dev/null || true)
"$ROOT/scripts/stop_multi_gateway.sh" >"$WORK/stop.out" 2>&1 || fail "stop_multi_gateway.sh failed: $(cat "$WORK/stop.out")"
for pid in $pids; do
    if [[ -e /proc/$pid ]] && ! grep -q '^State:.*Z' "/proc/$pid/status" 2>/dev/null; then
        fail "process $pid ($(tr '\0' ' ' </proc/"$pid"/cmdline)) is still running after stop_multi_gateway.sh"
    fi
done
if pgrep -f "$BIN/flare-" >/dev/null; then
    fail "flare processes remain: $(pgrep -af "$BIN/flare-")"
fi
echo "stop_multi_gateway.sh leaves no process behind: ok"
echo "PASS"
