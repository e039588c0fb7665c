#!/usr/bin/env bash
# Side by side on this machine: the same 1:1 workload and the same idle-connection count against
# ejabberd (Debian's package, on loopback, no shaper, SASL ANONYMOUS, nothing stored) and against
# Flare IM Core embedded (every message durable in SQLite before it is acknowledged), both driven by
# flare-bench (its --protocol xmpp speaks a minimal XMPP client). Prints both results and the ratios.
#   bench/compare_ejabberd.sh [PAIRS] [SECONDS] [IDLE_CONNECTIONS]
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
PAIRS=${1:-50}
SECONDS_RUN=${2:-10}
IDLE=${3:-1000}
BIN="$root/build/bin"
[[ -x $BIN/flare-bench && -x $BIN/flare ]] || make -C "$root" --no-print-directory build >&2
if ! command -v ejabberdctl >/dev/null; then
    echo "installing ejabberd (Debian package)..." >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends -o DPkg::Lock::Timeout=900 \
        ejabberd >/dev/null
fi
WORK=$(mktemp -d /tmp/flare-vs-ejabberd.XXXXXX)
chmod 755 "$WORK"  # ejabberd runs as its own user
EJ_PID="" ; FLARE_PID=""
cleanup() {
    [[ -n $EJ_PID ]] && kill "$EJ_PID" 2>/dev/null || true
    [[ -n $FLARE_PID ]] && kill "$FLARE_PID" 2>/dev/null || true
    wait 2>/dev/null || true
    if [[ ${KEEP:-0} == 1 ]]; then echo "kept $WORK" >&2; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
wait_port() {
    local deadline=$((SECONDS + 30))
    until ss -ltn "sport = :$1" | grep -q LISTEN; do
        ((SECONDS < deadline)) || { echo "port $1 did not open" >&2; exit 1; }
        sleep 0.1
    done
}

# ejabberd: its own config, spool and logs in $WORK, no epmd daemon left behind.
mkdir -p "$WORK/ej/logs" "$WORK/ej/spool"
cat >"$WORK/ej/ejabberd.yml" <<YML
hosts: ["localhost"]
loglevel: warning
certfiles: []
listen:
  - port: 25222
    ip: "127.0.0.1"
    module: ejabberd_c2s
    max_stanza_size: 262144
    shaper: none
    access: c2s
    backlog: 4096
auth_method: [anonymous]
anonymous_protocol: sasl_anon
acl:
  local:
    user_regexp: ""
access_rules:
  c2s:
    allow: all
shaper_rules:
  max_user_sessions: 10
  c2s_shaper: none
modules: {}
YML
echo 'ERL_OPTIONS="-env ERL_CRASH_DUMP_BYTES 0"' >"$WORK/ej/ejabberdctl.cfg"
chown -R ejabberd:ejabberd "$WORK/ej"
ERL_DIST_PORT=25299 ejabberdctl --config-dir "$WORK/ej" --config "$WORK/ej/ejabberd.yml" \
    --ctl-config "$WORK/ej/ejabberdctl.cfg" --logs "$WORK/ej/logs" --spool "$WORK/ej/spool" \
    --node ejbench@localhost foreground >"$WORK/ej/foreground.log" 2>&1 &
wait_port 25222
EJ_PID=$(pgrep -f "beam.smp.*$WORK/ej/spool")

PORT=61061 LISTEN_ADDRESS=127.0.0.1 CORE_GATEWAY_GRPC_PORT=0 CORE_GATEWAY_HTTP_PORT=0 LOG_LEVEL=warn \
    DATABASE_URL="sqlite://$WORK/flare.db" "$BIN/flare" serve embedded --config "$root/config/flare.toml" \
    >"$WORK/flare.log" 2>&1 &
FLARE_PID=$!
wait_port 61061

json() { tail -n 1 "$1"; }
field() { sed -n "s/.*\"$2\":\([0-9.]*\).*/\1/p" "$1"; }
B="$BIN/flare-bench"
echo "== 1:1 messages: $PAIRS pairs, 16 in flight per sender, ${SECONDS_RUN} s =="
# A run that does not verify still prints its line (with "ok":false); the verdict comes at the end.
"$B" direct --protocol xmpp --port 25222 --pairs "$PAIRS" --window 16 --duration "$SECONDS_RUN" \
    --max-messages 5000000 --server-pid "$EJ_PID" >"$WORK/ej-direct.out" || true
"$B" direct --port 61061 --pairs "$PAIRS" --window 16 --duration "$SECONDS_RUN" --max-messages 5000000 \
    --server-pid "$FLARE_PID" >"$WORK/flare-direct.out" || true
echo "ejabberd: $(json "$WORK/ej-direct.out")"
echo "flare:    $(json "$WORK/flare-direct.out")"
echo "== $IDLE idle connections =="
"$B" idle --protocol xmpp --port 25222 --connections "$IDLE" --duration 3 --server-pid "$EJ_PID" \
    >"$WORK/ej-idle.out" || true
"$B" idle --port 61061 --connections "$IDLE" --duration 3 --server-pid "$FLARE_PID" >"$WORK/flare-idle.out" || true
echo "ejabberd: $(json "$WORK/ej-idle.out")"
echo "flare:    $(json "$WORK/flare-idle.out")"

ej_rate=$(field "$WORK/ej-direct.out" delivered_per_s); fl_rate=$(field "$WORK/flare-direct.out" delivered_per_s)
ej_p99=$(field "$WORK/ej-direct.out" deliver_p99_ms); fl_p99=$(field "$WORK/flare-direct.out" deliver_p99_ms)
ej_kib=$(field "$WORK/ej-idle.out" rss_per_connection_KiB); fl_kib=$(field "$WORK/flare-idle.out" rss_per_connection_KiB)
echo "== ratios (flare / ejabberd) =="
awk -v a="$fl_rate" -v b="$ej_rate" 'BEGIN { printf "  delivered msg/s        %10.0f / %10.0f = %5.2fx\n", a, b, a / b }'
awk -v a="$fl_p99" -v b="$ej_p99" 'BEGIN { printf "  deliver p99 ms         %10.3f / %10.3f = %5.2fx (lower is better)\n", a, b, a / b }'
awk -v a="$fl_kib" -v b="$ej_kib" 'BEGIN { printf "  RSS KiB per connection %10.2f / %10.2f = %5.2fx (lower is better)\n", a, b, a / b }'
for f in ej-direct flare-direct ej-idle flare-idle; do
    grep -q '"ok":true' "$WORK/$f.out" || { echo "the $f run did not verify:" >&2; grep '^  !' "$WORK/$f.out" >&2; exit 1; }
done
