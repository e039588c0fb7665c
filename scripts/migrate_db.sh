#!/usr/bin/env bash
# Applies the PostgreSQL migrations (migrations/postgres/, carried by the flare binary) to DATABASE_URL,
# default the guide's database postgres://flare:flare123@localhost:25432/flare. Idempotent: run it as
# often as you like; it never drops or rewrites anything.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
FLARE_BIN=${FLARE_BIN:-$root/build/bin/flare}
[[ -x $FLARE_BIN ]] || { echo "migrate_db: $FLARE_BIN not found; run 'make' first" >&2; exit 1; }
export DATABASE_URL=${DATABASE_URL:-postgres://flare:flare123@localhost:25432/flare}
exec "$FLARE_BIN" migrate --database-url "$DATABASE_URL"
