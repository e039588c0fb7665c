#!/usr/bin/env bash
# Starts and stops the infrastructure of the distributed deployment from Debian packages, each server
# in a state directory of its own, on loopback: Redis, PostgreSQL 15, etcd and NATS JetStream.
# Used by the test suite (on test ports) and by scripts/start_multi_gateway.sh (on the guide's ports).
#
#   scripts/infra.sh start DIR [--redis PORT] [--pg PORT] [--etcd PORT] [--nats PORT] [--only LIST]
#   scripts/infra.sh stop DIR          stops exactly what `start DIR` started (PID files), then removes
#                                      nothing: DIR keeps the logs and data until you delete it
#   scripts/infra.sh env DIR           prints the URLs of what runs (REDIS_URL=..., DATABASE_URL=...)
#
# Defaults are the operator guide's ports: Redis 26379, PostgreSQL 25432, etcd 22379, NATS 24222.
# PostgreSQL gets role `flare` (password `flare123`, CREATEDB) and database `flare`.
# LIST is a comma list of redis,pg,etcd,nats (default: all four).
set -euo pipefail

die() { echo "infra: $*" >&2; exit 1; }
cmd=${1:-}; dir=${2:-}
[[ -n $cmd && -n $dir ]] || die "usage: infra.sh start|stop|env DIR [--redis P] [--pg P] [--etcd P] [--nats P] [--only LIST]"
shift 2
REDIS_PORT=26379 PG_PORT=25432 ETCD_PORT=22379 NATS_PORT=24222 ONLY=redis,pg,etcd,nats
while (($#)); do
    case $1 in
        --redis) REDIS_PORT=$2; shift 2 ;;
        --pg) PG_PORT=$2; shift 2 ;;
        --etcd) ETCD_PORT=$2; shift 2 ;;
        --nats) NATS_PORT=$2; shift 2 ;;
        --only) ONLY=$2; shift 2 ;;
        *) die "unknown option $1" ;;
    esac
done
wants() { [[ ",$ONLY," == *",$1,"* ]]; }
# shellcheck source=proc_lib.sh
source "$(dirname "$0")/proc_lib.sh"

wait_port() {  # name port pid log
    local i
    for ((i = 0; i < 300; i++)); do
        port_open "$2" && return 0
        kill -0 "$3" 2>/dev/null || die "$1 exited during start-up; see $4: $(tail -n 3 "$4" 2>/dev/null | tr '\n' ' ')"
        sleep 0.05
    done
    die "$1 did not listen on 127.0.0.1:$2 within 15 s; see $4"
}
check_free() { port_open "$2" && die "$1: port $2 is already in use (another server running? stop it or pick --${1} PORT)"; return 0; }

start_redis() {
    command -v redis-server >/dev/null || die "redis-server is not installed (scripts/install_deps.sh --servers)"
    check_free redis "$REDIS_PORT"
    mkdir -p "$dir/redis"
    # Append-only file (fsync every second): presence and routes survive a Redis restart.
    (close_fds; exec setsid redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly yes --dir "$dir/redis" \
        --daemonize no --logfile "$dir/redis.log" </dev/null >/dev/null 2>&1) &
    echo $! >"$dir/redis.pid"
    wait_port redis "$REDIS_PORT" $! "$dir/redis.log"
    echo "REDIS_URL=redis://127.0.0.1:$REDIS_PORT" >>"$dir/env"
}

start_pg() {
    local bin=/usr/lib/postgresql/15/bin
    [[ -x $bin/postgres ]] || die "postgresql-15 is not installed (scripts/install_deps.sh --servers)"
    check_free pg "$PG_PORT"
    local as=(setpriv --reuid=postgres --regid=postgres --init-groups --)
    [[ $(id -u) -eq 0 ]] || as=()
    mkdir -p "$dir/pg"
    if [[ $(id -u) -eq 0 ]]; then
        chown postgres:postgres "$dir/pg"
        chmod o+x "$dir"
        "${as[@]}" test -w "$dir/pg" ||
            die "user postgres cannot reach $dir/pg (a parent directory is not searchable by others: chmod o+x it)"
    fi
    if [[ ! -f $dir/pg/data/PG_VERSION ]]; then
        echo flare123 >"$dir/pg/pwfile"
        [[ $(id -u) -eq 0 ]] && chown postgres:postgres "$dir/pg/pwfile"
        "${as[@]}" "$bin/initdb" -D "$dir/pg/data" -U postgres --auth-local=trust --auth-host=scram-sha-256 \
            --pwfile="$dir/pg/pwfile" -E UTF8 --locale=C.UTF-8 --no-sync >"$dir/pg-initdb.log" 2>&1 ||
            die "initdb failed; see $dir/pg-initdb.log"
    fi
    (close_fds; exec setsid "${as[@]}" "$bin/postgres" -D "$dir/pg/data" -p "$PG_PORT" -k "$dir/pg" \
        -c listen_addresses=127.0.0.1 -c fsync=on -c max_connections=200 </dev/null >"$dir/pg.log" 2>&1) &
    echo $! >"$dir/pg.pid"
    wait_port postgresql "$PG_PORT" $! "$dir/pg.log"
    local i
    for ((i = 0; i < 100; i++)); do
        "$bin/pg_isready" -q -h "$dir/pg" -p "$PG_PORT" && break
        sleep 0.05
    done
    local psql=("$bin/psql" -q -v ON_ERROR_STOP=1 -h "$dir/pg" -p "$PG_PORT" -U postgres -d postgres)
    "${psql[@]}" -tAc "SELECT 1 FROM pg_roles WHERE rolname='flare'" | grep -q 1 ||
        "${psql[@]}" -c "CREATE ROLE flare LOGIN CREATEDB PASSWORD 'flare123'"
    "${psql[@]}" -tAc "SELECT 1 FROM pg_database WHERE datname='flare'" | grep -q 1 ||
        "${psql[@]}" -c "CREATE DATABASE flare OWNER flare"
    echo "DATABASE_URL=postgres://flare:flare123@127.0.0.1:$PG_PORT/flare" >>"$dir/env"
}

start_etcd() {
    command -v etcd >/dev/null || die "etcd is not installed (scripts/install_deps.sh --servers)"
    check_free etcd "$ETCD_PORT"
    local peer=$((ETCD_PORT + 1))
    check_free etcd "$peer"
    (close_fds; exec setsid etcd --name n1 --data-dir "$dir/etcd" --listen-client-urls "http://127.0.0.1:$ETCD_PORT" \
        --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" --listen-peer-urls "http://127.0.0.1:$peer" \
        --initial-advertise-peer-urls "http://127.0.0.1:$peer" --initial-cluster "n1=http://127.0.0.1:$peer" \
        --initial-cluster-state new --heartbeat-interval 10 --election-timeout 100 --logger zap \
        </dev/null >"$dir/etcd.log" 2>&1) &
    echo $! >"$dir/etcd.pid"
    wait_port etcd "$ETCD_PORT" $! "$dir/etcd.log"
    echo "ETCD_ENDPOINTS=http://127.0.0.1:$ETCD_PORT" >>"$dir/env"
}

start_nats() {
    command -v nats-server >/dev/null || die "nats-server is not installed (scripts/install_deps.sh --servers)"
    check_free nats "$NATS_PORT"
    (close_fds; exec setsid nats-server -p "$NATS_PORT" -a 127.0.0.1 -js -sd "$dir/nats" </dev/null >"$dir/nats.log" 2>&1) &
    echo $! >"$dir/nats.pid"
    wait_port nats "$NATS_PORT" $! "$dir/nats.log"
    echo "NATS_URL=nats://127.0.0.1:$NATS_PORT" >>"$dir/env"
}


# ours PID NAME: the process is the server we started (not a reused PID).
ours() {
    local want
    case $2 in redis) want=redis-server ;; pg) want=postgres ;; etcd) want=etcd ;; nats) want=nats-server ;; esac
    alive "$1" && tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null | grep -q "$want"
}

stop_all() {  # names...: TERM to each, then wait for all (KILL after 5 s)
    local s pid i pids=()
    for s in "$@"; do
        [[ -f $dir/$s.pid ]] || continue
        pid=$(<"$dir/$s.pid")
        if ! ours "$pid" "$s"; then
            rm -f "$dir/$s.pid"
            continue
        fi
        # postgres: SIGINT is its fast shutdown (TERM would wait for clients to leave)
        if alive "$pid"; then
            if [[ $s == pg ]]; then kill -INT "$pid" 2>/dev/null || true; else kill -TERM "$pid" 2>/dev/null || true; fi
            pids+=("$pid")
        fi
        rm -f "$dir/$s.pid"
    done
    for pid in "${pids[@]}"; do
        for ((i = 0; i < 100; i++)); do alive "$pid" || break; sleep 0.05; done
        if alive "$pid"; then kill -KILL "$pid" 2>/dev/null || true; fi
    done
}

case $cmd in
    start)
        mkdir -p "$dir"
        dir=$(cd "$dir" && pwd)
        : >"$dir/env"
        trap 'echo "infra: start failed; stopping what was started" >&2; "$0" stop "$dir"' EXIT
        wants redis && start_redis
        wants pg && start_pg
        wants etcd && start_etcd
        wants nats && start_nats
        trap - EXIT
        cat "$dir/env"
        ;;
    stop)
        [[ -d $dir ]] || exit 0
        stop_all nats etcd pg redis
        ;;
    env)
        cat "$dir/env"
        ;;
    *) die "unknown command $cmd" ;;
esac
