#!/usr/bin/env bash
# CTest fixture around scripts/infra.sh: `start` first stops and wipes what an earlier, interrupted run
# may have left in the state directory, so every test run starts from empty servers.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
infra=$here/../../scripts/infra.sh
cmd=$1 dir=$2
shift 2
case $cmd in
    start)
        "$infra" stop "$dir"
        rm -rf "$dir"
        exec "$infra" start "$dir" "$@"
        ;;
    stop) exec "$infra" stop "$dir" ;;
esac
