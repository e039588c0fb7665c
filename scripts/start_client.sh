#!/usr/bin/env bash
# Starts the chat client: scripts/start_client.sh USER [--room NAME | --to USER] [options]
# Builds it first when needed. NEGOTIATION_HOST picks the gateway (default localhost:60051).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
if [[ $# -lt 1 ]]; then
    echo "usage: scripts/start_client.sh USER [--room NAME | --to USER] [--device ID] [--history N] [--linger S] [--json] [--quiet]" >&2
    exit 2
fi
if [[ ! -x "$root/build/bin/chatroom_client" ]]; then
    make -C "$root" --no-print-directory build >&2
fi
exec "$root/build/bin/chatroom_client" "$@"
