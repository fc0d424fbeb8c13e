#!/usr/bin/env bash
# `make psql`: psql as the app role on the `make run` cluster; `make psql SQL="…"` runs one statement and exits;
# `make psql READONLY=1` as the read-only role (iothub_readonly: SELECT on telemetry, aggregates, devices, rules,
# events), as a dashboard would connect.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

state=$(state_dir)
port=${IOTHUB_PG_PORT:-54329}
cluster_running "$state/pg" || die "the local cluster is not running: start it with make run"
# shellcheck disable=SC1091
if [ -n "${READONLY:-}" ]; then
    user=iothub_readonly
    PGPASSWORD=$(sed -n 's/^IOTHUB_READONLY_PASSWORD=//p' "$state/run.env")
    [ -n "$PGPASSWORD" ] || die "no read-only password yet: run make run once"
else
    user=$APP_ROLE
    PGPASSWORD=$(sed -n 's/^DB_PASSWORD=//p' "$state/run.env")
fi
export PGPASSWORD
args=(-h 127.0.0.1 -p "$port" -U "$user" -d "$APP_DB")
if [ -n "${SQL:-}" ]; then
    exec "$PG_BIN/psql" "${args[@]}" -v ON_ERROR_STOP=1 -c "$SQL"
fi
exec "$PG_BIN/psql" "${args[@]}"
