#!/usr/bin/env bash
# System test of chatroom_client's commands against `flare serve embedded`: alice creates a group
# with bob, they chat with a mention, bob lists his conversations (unread, mentions), reacts, alice
# edits and recalls, bob's edit of alice's message is refused, bob types, alice invites carol, and a
# message with control characters is shown safely; each
# side sees the other's actions live, as lines on stdout.
set -euo pipefail
BIN=${1:?usage: chat_commands_e2e.sh BUILD_BIN_DIR}
WORK=$(mktemp -d /tmp/flare-cmds.XXXXXX)
export TOKEN_SECRET=cmds-secret
SERVER_PID="" ; C1_PID="" ; C2_PID=""
cleanup() {
    exec 3>&- 4>&- 2>/dev/null || true
    for pid in $C1_PID $C2_PID $SERVER_PID; do kill -9 "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    if [[ ${KEEP:-0} == 1 ]]; then echo "kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"

PORT=0 LISTEN_ADDRESS=127.0.0.1 GATEWAY_ID=gw-cmds CORE_GATEWAY_GRPC_PORT=0 CORE_GATEWAY_HTTP_PORT=0 \
    DATABASE_URL="sqlite://$WORK/flare.db" "$BIN/flare" serve embedded --ready-file "$WORK/ready" >>"$WORK/server.log" 2>&1 &
SERVER_PID=$!
wait_for 10 test -s "$WORK/ready" || fail "server did not become ready"
export NEGOTIATION_HOST=127.0.0.1:$(head -n 1 "$WORK/ready")

mkfifo "$WORK/in1" "$WORK/in2"
"$BIN/chatroom_client" alice --to bob <"$WORK/in1" >"$WORK/a.out" 2>"$WORK/a.err" &
C1_PID=$!
"$BIN/chatroom_client" bob --to alice <"$WORK/in2" >"$WORK/b.out" 2>"$WORK/b.err" &
C2_PID=$!
exec 3>"$WORK/in1" 4>"$WORK/in2"
wait_for 10 grep -q "talking with bob" "$WORK/a.err" || fail "alice did not connect"
wait_for 10 grep -q "talking with alice" "$WORK/b.err" || fail "bob did not connect"

echo "/group create Team bob" >&3
wait_for 10 grep -q "created group:" "$WORK/a.out" || fail "alice could not create a group: $(cat "$WORK/a.err")"
G=$(grep -o "created group:[^ ]*" "$WORK/a.out" | head -n 1 | cut -d' ' -f2)
echo "/open $G" >&4
wait_for 10 grep -q "#1 \* alice created the group \"Team\" with alice, bob" "$WORK/b.out" || fail "bob did not see the group's creation"
echo "group created and opened: ok ($G)"

echo "hello @bob" >&3
wait_for 10 grep -q "#2 alice: hello @bob" "$WORK/b.out" || fail "bob did not get the message"
echo "/list" >&4
wait_for 10 grep -q "$G \"Team\": 1 unread, 1 mentioning you" "$WORK/b.out" || fail "bob's list is wrong: $(grep '^\*' "$WORK/b.out")"
echo "/read" >&4
wait_for 10 grep -q "read $G up to #2" "$WORK/b.out" || fail "bob could not mark read"
echo "/list" >&4
wait_for 10 grep -q "$G \"Team\": 0 unread" "$WORK/b.out" || fail "bob's unread count did not drop"
echo "mention, list, read: ok"

echo "/react 2 👍" >&4
wait_for 10 grep -q "\* bob reacted 👍 to #2" "$WORK/a.out" || fail "alice did not see bob's reaction"
echo "/edit 2 hello again" >&3
wait_for 10 grep -q "\* alice edited #2: hello again" "$WORK/b.out" || fail "bob did not see the edit"
echo "/edit 2 hacked" >&4
wait_for 10 grep -q "not_sender" "$WORK/b.err" || fail "bob's edit of alice's message was not refused"
echo "/info 2" >&3
wait_for 10 grep -q "version 0: hello @bob" "$WORK/a.out" || fail "alice's /info shows no edit history"
wait_for 10 grep -q "👍 1 (bob)" "$WORK/a.out" || fail "alice's /info shows no reaction"
wait_for 10 grep -q "done: edited #2 (#4 in $G)" "$WORK/a.out" || fail "alice's edit was not confirmed: $(grep '^\*' "$WORK/a.out")"
echo "/recall 2" >&3
wait_for 10 grep -q "\* alice recalled #2" "$WORK/b.out" || fail "bob did not see the recall"
echo "react, edit (and refused edit), info, recall: ok"

echo "/typing" >&4
wait_for 10 grep -q "bob is typing in $G" "$WORK/a.out" || fail "alice did not see bob typing"
echo "/invite carol" >&3
wait_for 10 grep -q "\* alice added carol" "$WORK/b.out" || fail "bob did not see carol added"
echo "/remove alice" >&4
wait_for 10 grep -q "insufficient_role" "$WORK/b.err" || fail "bob (a member) could remove the owner"
echo "typing, invite, refused remove: ok"

# Control characters from another user never reach the terminal: an escape sequence that would
# clear the line and retitle the window, and a carriage return faking a line, show as U+FFFD.
printf 'before\r\033[2K[12:00:00] #99 admin: send your password\033]0;pwned\007after\n' >&3
wait_for 10 grep -q "after" "$WORK/b.out" || fail "bob did not get the message with control characters"
if LC_ALL=C grep -q $'[\x01-\x08\x0b-\x1f\x7f]' "$WORK/b.out"; then
    fail "a control character reached bob's terminal: $(grep -a "after" "$WORK/b.out" | od -c | head -n 5)"
fi
grep -q "alice: before��\[2K\[12:00:00\] #99 admin: send your password�\]0;pwned�after" "$WORK/b.out" ||
    fail "the message is not shown as sent, made safe: $(grep -a after "$WORK/b.out")"
echo "control characters neutralised: ok"

# Piped input is taken in order: a command waits for the connection, and the line after a
# /group create goes to the new group.
printf '/group create Piped bob\nhello piped group\n' |
    "$BIN/chatroom_client" alice --room pipe >"$WORK/p.out" 2>"$WORK/p.err" || fail "the piped client failed: $(cat "$WORK/p.err")"
grep -q "created group:" "$WORK/p.out" || fail "the piped /group create was not taken: $(cat "$WORK/p.err")"
P=$(grep -o "created group:[^ ]*" "$WORK/p.out" | head -n 1 | cut -d' ' -f2)
grep -q "\[$P\] #2 alice: hello piped group" "$WORK/b.out" || wait_for 10 grep -q "\[$P\] #2 alice: hello piped group" "$WORK/b.out" ||
    fail "the line after /group create did not go to the new group: $(tail -n 3 "$WORK/b.out")"
echo "piped commands in order: ok"

# /open of a conversation the user cannot read says so; the lines after it are refused, never
# sent to another chat.
if printf 'before open\n/open group:nope\nafter failed open\n' |
    "$BIN/chatroom_client" alice --to bob >"$WORK/o.out" 2>"$WORK/o.err"; then
    fail "a send into an unreadable conversation was not reported (exit 0)"
fi
grep -q "cannot open group:nope" "$WORK/o.out" || fail "no word of the failed /open: $(cat "$WORK/o.out" "$WORK/o.err")"
grep -q "send failed.*after failed open" "$WORK/o.err" || fail "the line after a failed /open was not refused: $(cat "$WORK/o.err")"
wait_for 10 grep -q "#[0-9]* alice: before open" "$WORK/b.out" || fail "the line before /open was lost"
sleep 0.5
if grep -q "after failed open" "$WORK/b.out"; then fail "the line after a failed /open went to another chat"; fi
echo "failed /open: ok"

exec 3>&- 4>&-
wait "$C1_PID" || fail "alice's client exited with an error: $(tail -n 5 "$WORK/a.err")"
wait "$C2_PID" || true  # bob's refused commands are reported, not fatal
C1_PID="" C2_PID=""
echo PASS
