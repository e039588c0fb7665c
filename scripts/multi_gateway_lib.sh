# Shared by start_multi_gateway.sh, stop_multi_gateway.sh and check_services.sh (sourced).
# The deployment: the services in the operator guide's start order, their ports, and where their PID
# files and logs are.

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=proc_lib.sh
source "$ROOT/scripts/proc_lib.sh"
BIN_DIR=${FLARE_BIN_DIR:-$ROOT/build/bin}
STATE_DIR=${FLARE_STATE_DIR:-/tmp/flare-multi}   # PID files, the infrastructure's data
LOG_DIR=${FLARE_LOG_DIR:-/tmp}                   # /tmp/flare-<service>.log, as the guide says

# name role grpc-port admin-port [gateway-port region]
SERVICES=(
    "signaling-online signaling-online 50051 9151"
    "signaling-route signaling-route 50062 9162"
    "hook-engine hook-engine 50110 9210"
    "session session 50090 9190"
    "message-orchestrator message-orchestrator 50081 9181"
    "storage-writer storage-writer - 9170"
    "push-server push-server 50091 9191"
    "access-gateway-gateway-beijing-1 access-gateway 60053 61051 60051 beijing"
    "access-gateway-gateway-shanghai-1 access-gateway 60054 61052 60052 shanghai"
    "core-gateway core-gateway 50050 9150"
)

REDIS_PORT=26379 PG_PORT=25432 ETCD_PORT=22379 NATS_PORT=24222
export DATABASE_URL=${DATABASE_URL:-postgres://flare:flare123@127.0.0.1:$PG_PORT/flare}
export REDIS_URL=${REDIS_URL:-redis://127.0.0.1:$REDIS_PORT}
export ETCD_ENDPOINTS=${ETCD_ENDPOINTS:-http://127.0.0.1:$ETCD_PORT}
if [[ -z ${BUS_URL:-} && -n ${KAFKA_BOOTSTRAP_SERVERS:-} ]]; then
    export BUS_URL=kafka://$KAFKA_BOOTSTRAP_SERVERS
fi
export BUS_URL=${BUS_URL:-nats://127.0.0.1:$NATS_PORT}

log_file() {  # service name -> its log
    echo "$LOG_DIR/flare-$1.log"
}


# http_ok PORT PATH: GET answers 200 within 2 s.
http_ok() {
    local line
    line=$(timeout 2 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$0" && printf "GET %s HTTP/1.0\r\nHost: localhost\r\n\r\n" "$1" >&3 && head -n 1 <&3' "$1" "$2" 2>/dev/null) || return 1
    [[ $line == *" 200 "* ]]
}


# ours PID ROLE: the process is the flare role this deployment started (a PID file can outlive its
# process, and the number be reused by an unrelated one).
ours() { alive "$1" && tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null | grep -q "flare-$2\b"; }
