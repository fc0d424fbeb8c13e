#!/usr/bin/env bash
# `make psql`: psql as the app role on the `make run` cluster; `make psql SQL="…"` runs one statement and exits.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

state=$(state_dir)
port=${IOTHUB_PG_PORT:-54329}
cluster_running "$state/pg" || die "the local cluster is not running: start it with make run"
# shellcheck disable=SC1091
DB_PASSWORD=$(sed -n 's/^DB_PASSWORD=//p' "$state/run.env")
export PGPASSWORD=$DB_PASSWORD
args=(-h 127.0.0.1 -p "$port" -U "$APP_ROLE" -d "$APP_DB")
if [ -n "${SQL:-}" ]; then
    exec "$PG_BIN/psql" "${args[@]}" -v ON_ERROR_STOP=1 -c "$SQL"
fi
exec "$PG_BIN/psql" "${args[@]}"
