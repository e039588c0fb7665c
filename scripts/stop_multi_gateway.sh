#!/usr/bin/env bash
# Stops exactly what scripts/start_multi_gateway.sh started: the services by their PID files, in
# reverse start order (SIGTERM, so gateways say goodbye and storage drains; SIGKILL after 10 s), then
# the infrastructure servers it started itself (not ones that were already running).
#   scripts/stop_multi_gateway.sh                 everything
#   scripts/stop_multi_gateway.sh --service NAME  one service (e.g. to restart it)
set -euo pipefail
# shellcheck source=multi_gateway_lib.sh
source "$(dirname "$0")/multi_gateway_lib.sh"

only=""
case ${1:-} in
    "") ;;
    --service)
        [[ -n ${2:-} ]] || { echo "stop_multi_gateway: --service needs a name" >&2; exit 2; }
        only=$2 ;;
    -h | --help) sed -n '2,6p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "stop_multi_gateway: unknown option $1 (use --service NAME, or nothing to stop everything)" >&2; exit 2 ;;
esac

role_of() {  # service name -> its role
    local s n r
    for s in "${SERVICES[@]}"; do
        read -r n r _ <<<"$s"
        [[ $n == "$1" ]] && { echo "$r"; return; }
    done
}

stop_pids() {  # names...: TERM all, then wait for each
    local name pid i pids=() names=()
    for name in "$@"; do
        [[ -f $STATE_DIR/$name.pid ]] || continue
        pid=$(<"$STATE_DIR/$name.pid")
        if ours "$pid" "$(role_of "$name")"; then
            kill -TERM "$pid" 2>/dev/null || true
            pids+=("$pid")
            names+=("$name")
        fi
        rm -f "$STATE_DIR/$name.pid"
    done
    for i in "${!pids[@]}"; do
        local waited
        for ((waited = 0; waited < 100; waited++)); do alive "${pids[$i]}" || break; sleep 0.1; done
        if alive "${pids[$i]}"; then
            echo "${names[$i]} did not stop within 10 s: killing it" >&2
            kill -KILL "${pids[$i]}" 2>/dev/null || true
        fi
        echo "stopped ${names[$i]} (pid ${pids[$i]})"
    done
}

if [[ -n $only ]]; then
    for s in "${SERVICES[@]}"; do
        read -r name _ <<<"$s"
        if [[ $name == "$only" || $name == "access-gateway-$only" ]]; then
            stop_pids "$name"
            exit 0
        fi
    done
    echo "stop_multi_gateway: unknown service '$only'" >&2
    exit 2
fi

# Entry points first (gateways, core gateway), then the pipeline, then the directory services.
order=()
for ((i = ${#SERVICES[@]} - 1; i >= 0; i--)); do
    read -r name _ <<<"${SERVICES[$i]}"
    order+=("$name")
done
stop_pids "${order[@]:0:3}"   # core-gateway and the two gateways
stop_pids "${order[@]:3}"
if [[ -d $STATE_DIR/infra ]]; then
    "$ROOT/scripts/infra.sh" stop "$STATE_DIR/infra"
    rm -f "$STATE_DIR/infra/env"
    echo "stopped the infrastructure started in $STATE_DIR/infra"
fi
