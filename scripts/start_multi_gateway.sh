#!/usr/bin/env bash
# Brings up the whole distributed IM core on this machine, as the operator guide describes:
#   1. infrastructure: Redis 26379, PostgreSQL 25432, etcd 22379, NATS JetStream 24222 - each one
#      already answering on its port is used as it is; the others are started from the Debian
#      packages in $FLARE_STATE_DIR (scripts/infra.sh). With KAFKA_BOOTSTRAP_SERVERS (or
#      BUS_URL=kafka://...) the bus is that Kafka instead of NATS (e.g. deploy/docker-compose.yml).
#   2. database migrations (flare migrate);
#   3. the services in dependency order, each waited for on its /readyz (not by sleeping):
#      signaling-online, signaling-route, hook-engine, session, message-orchestrator, storage-writer,
#      push-server, gateway-beijing-1 (60051), gateway-shanghai-1 (60052), core-gateway (50050);
#   4. a summary.
# Logs: /tmp/flare-<service>.log (FLARE_LOG_DIR); PID files in FLARE_STATE_DIR (/tmp/flare-multi).
# Services an earlier run left behind (its PID files) are stopped first. Stop everything with
# scripts/stop_multi_gateway.sh.
#
#   scripts/start_multi_gateway.sh                 everything
#   scripts/start_multi_gateway.sh --service NAME  (re)start one service, e.g. push-server
set -euo pipefail
# shellcheck source=multi_gateway_lib.sh
source "$(dirname "$0")/multi_gateway_lib.sh"

only=""
while (($#)); do
    case $1 in
        --service)
            [[ -n ${2:-} ]] || { echo "start_multi_gateway: --service needs a name" >&2; exit 2; }
            only=$2; shift 2 ;;
        -h | --help) sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "start_multi_gateway: unknown option $1" >&2; exit 2 ;;
    esac
done

die() { echo "start_multi_gateway: $*" >&2; exit 1; }

if [[ ! -x $BIN_DIR/flare ]]; then
    echo "building flare (make build)..." >&2
    make -C "$ROOT" --no-print-directory build >&2
fi
mkdir -p "$STATE_DIR" "$LOG_DIR"

missing_infra() {
    port_open $REDIS_PORT || echo redis
    port_open $PG_PORT || echo pg
    port_open $ETCD_PORT || echo etcd
    if [[ $BUS_URL == nats://* ]] && ! port_open $NATS_PORT; then echo nats; fi
}

start_infra() {
    local want
    want=$(missing_infra | paste -sd, -)
    if [[ -z $want ]]; then
        echo "infrastructure: Redis, PostgreSQL, etcd and the bus answer; using them"
        return
    fi
    if compgen -G "$STATE_DIR/infra/*.pid" >/dev/null; then
        "$ROOT/scripts/infra.sh" stop "$STATE_DIR/infra"  # ours, from an earlier run, partly gone
        want=$(missing_infra | paste -sd, -)
    fi
    "$ROOT/scripts/install_deps.sh" --servers
    echo "infrastructure: starting $want in $STATE_DIR/infra"
    "$ROOT/scripts/infra.sh" start "$STATE_DIR/infra" --only "$want" >/dev/null
}

stop_old() {  # name role: stops what an earlier run of this script started under that name
    local pidf=$STATE_DIR/$1.pid pid i
    [[ -f $pidf ]] || return 0
    pid=$(<"$pidf")
    if ! ours "$pid" "$2"; then
        rm -f "$pidf"  # stale: that process is gone (or the number now belongs to another program)
        return 0
    fi
    if alive "$pid"; then
        echo "stopping $1 left from an earlier run (pid $pid)"
        kill -TERM "$pid" 2>/dev/null || true
        for ((i = 0; i < 100; i++)); do alive "$pid" || break; sleep 0.1; done
        if alive "$pid"; then kill -KILL "$pid" 2>/dev/null || true; fi
    fi
    rm -f "$pidf"
}

start_service() {  # name role grpc admin [port region]
    local name=$1 role=$2 grpc=$3 admin=$4 port=${5:-} region=${6:-} log pid i
    log=$(log_file "$name")
    stop_old "$name" "$role"
    for p in $grpc $admin $port; do
        [[ $p == - ]] && continue
        port_open "$p" && die "port $p (for $name) is in use by another process; stop it and run again"
    done
    local env=()
    if [[ $role == access-gateway ]]; then
        env=(GATEWAY_ID="${name#access-gateway-}" GATEWAY_REGION="$region" PORT="$port")
    fi
    echo "$(date '+%F %T') starting $name" >>"$log"
    (close_fds; exec env "${env[@]}" setsid "$BIN_DIR/flare-$role" </dev/null >>"$log" 2>&1) &
    pid=$!
    echo "$pid" >"$STATE_DIR/$name.pid"
    for ((i = 0; i < 300; i++)); do
        http_ok "$admin" /readyz && return 0
        alive "$pid" || die "$name exited during start-up; see $log:
$(tail -n 5 "$log")"
        sleep 0.1
    done
    die "$name is not ready after 30 s; see $log"
}

if [[ -n $only ]]; then
    for s in "${SERVICES[@]}"; do
        read -r name role grpc admin port region <<<"$s"
        if [[ $name == "$only" || $name == "access-gateway-$only" ]]; then
            start_service "$name" "$role" "$grpc" "$admin" "$port" "$region"
            echo "$name ready (log $(log_file "$name"))"
            exit 0
        fi
    done
    die "unknown service '$only' (one of: signaling-online signaling-route hook-engine session message-orchestrator storage-writer push-server gateway-beijing-1 gateway-shanghai-1 core-gateway)"
fi

# The guide's service ports lie inside Linux's ephemeral range (32768-60999): an outgoing connection of
# any process could take one of them as its local port and make the service's bind fail. As root,
# reserve them (net.ipv4.ip_local_reserved_ports, added to what is reserved already; until reboot).
reserve_ports() {
    local f=/proc/sys/net/ipv4/ip_local_reserved_ports
    local ours="50050-50052,50062,50081,50090-50091,50110,60051-60054,61051-61052"
    [[ -w $f ]] || return 0
    local current range lo hi covered=0
    current=$(<"$f")
    for range in ${current//,/ }; do  # already there (the kernel keeps the list merged and sorted)
        lo=${range%-*} hi=${range#*-}
        ((lo <= 50050 && 50050 <= hi)) && covered=$((covered + 1))
        ((lo <= 61052 && 61052 <= hi)) && covered=$((covered + 1))
    done
    ((covered == 2)) && return 0
    echo "${current:+$current,}$ours" >"$f" 2>/dev/null &&
        echo "reserved the service ports from the ephemeral range (net.ipv4.ip_local_reserved_ports)"
    return 0
}

reserve_ports
start_infra
"$BIN_DIR/flare" migrate --database-url "$DATABASE_URL" | sed 's/^/migrations: /'
for s in "${SERVICES[@]}"; do
    read -r name role grpc admin port region <<<"$s"
    start_service "$name" "$role" "$grpc" "$admin" "$port" "$region"
done

printf '\nFlare IM Core (distributed) is up. Bus: %s\n\n' "$BUS_URL"
printf '%-36s %-8s %-7s %-6s %s\n' SERVICE PID GRPC ADMIN LOG
for s in "${SERVICES[@]}"; do
    read -r name role grpc admin port region <<<"$s"
    printf '%-36s %-8s %-7s %-6s %s\n' "$name${port:+ (ws $port)}" "$(<"$STATE_DIR/$name.pid")" "$grpc" "$admin" \
        "$(log_file "$name")"
done
cat <<EOF

Chat:  NEGOTIATION_HOST=localhost:60051 scripts/start_client.sh user1
       NEGOTIATION_HOST=localhost:60052 scripts/start_client.sh user2
Push:  build/bin/business_push_client
Check: scripts/check_services.sh      Stop: scripts/stop_multi_gateway.sh
EOF
