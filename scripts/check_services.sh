#!/usr/bin/env bash
# Checks the distributed deployment: the infrastructure (Redis, PostgreSQL, etcd, the bus), then every
# service's process (PID file), its gRPC and WebSocket ports, and its /healthz and /readyz. Prints one
# line per check and where the logs are; exits 1 when anything is wrong.
set -uo pipefail
if [[ ${1:-} == -h || ${1:-} == --help ]]; then
    sed -n '2,4p' "$0" | sed 's/^# \{0,1\}//'
    exit 0
fi
# shellcheck source=multi_gateway_lib.sh
source "$(dirname "$0")/multi_gateway_lib.sh"

failures=0
ok() { printf '  ok    %s\n' "$*"; }
bad() { printf '  FAIL  %s\n' "$*"; failures=$((failures + 1)); }

echo "infrastructure"
if [[ $(timeout 2 bash -c 'exec 3<>/dev/tcp/127.0.0.1/'$REDIS_PORT' && printf "PING\r\n" >&3 && head -c 5 <&3' 2>/dev/null) == "+PONG" ]]; then
    ok "Redis on $REDIS_PORT answers PING"
else
    bad "Redis on $REDIS_PORT does not answer PING"
fi
if command -v pg_isready >/dev/null && pg_isready -q -h 127.0.0.1 -p $PG_PORT; then
    ok "PostgreSQL on $PG_PORT accepts connections"
elif port_open $PG_PORT; then
    ok "PostgreSQL port $PG_PORT is open (pg_isready not installed)"
else
    bad "PostgreSQL on $PG_PORT is not accepting connections"
fi
if http_ok $ETCD_PORT /health; then ok "etcd on $ETCD_PORT is healthy"; else bad "etcd on $ETCD_PORT: /health does not answer 200"; fi
case $BUS_URL in
    nats://*)
        if port_open $NATS_PORT; then ok "NATS on $NATS_PORT is listening"; else bad "NATS on $NATS_PORT is not listening"; fi ;;
    kafka://*)
        hostport=${BUS_URL#kafka://}; hostport=${hostport%%,*}
        if (exec 3<>"/dev/tcp/${hostport%:*}/${hostport##*:}") 2>/dev/null; then ok "Kafka $hostport is listening"; else bad "Kafka $hostport is not listening"; fi ;;
esac

echo "services"
for s in "${SERVICES[@]}"; do
    read -r name role grpc admin port region <<<"$s"
    pid=""
    [[ -f $STATE_DIR/$name.pid ]] && pid=$(<"$STATE_DIR/$name.pid")
    if ours "$pid" "$role"; then ok "$name: process $pid runs"; else bad "$name: no flare-$role process (PID file $STATE_DIR/$name.pid)"; fi
    if [[ $grpc != - ]]; then
        if port_open "$grpc"; then ok "$name: gRPC port $grpc open"; else bad "$name: gRPC port $grpc closed"; fi
    fi
    if [[ $role == core-gateway ]]; then
        if port_open 50052; then ok "$name: HTTP/JSON port 50052 open"; else bad "$name: HTTP/JSON port 50052 closed"; fi
    fi
    if [[ -n $port ]]; then
        if port_open "$port"; then ok "$name: WebSocket port $port open"; else bad "$name: WebSocket port $port closed"; fi
    fi
    if http_ok "$admin" /healthz && http_ok "$admin" /readyz; then
        ok "$name: healthy and ready (http://127.0.0.1:$admin/metrics)"
    else
        bad "$name: /healthz or /readyz on admin port $admin does not answer 200"
    fi
done

echo "logs"
for s in "${SERVICES[@]}"; do
    read -r name _ <<<"$s"
    printf '  %s\n' "$(log_file "$name")"
done
if ((failures > 0)); then
    echo "$failures check(s) failed"
    exit 1
fi
echo "all checks passed"
