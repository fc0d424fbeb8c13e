#!/usr/bin/env bash
# `make test`: installs what is missing, starts a throwaway PostgreSQL 15 + TimescaleDB cluster on a private port
# and socket, runs ruff, the migrations check and pytest against it, and always removes the cluster.
# Arguments go to pytest (`make test ARGS="tests/iothub -k health"`).
set -euo pipefail
source "$(dirname "$0")/lib.sh"

ensure_system_packages
ensure_python

port=${TEST_PG_PORT:-55432}
cluster=$(state_dir)/test-cluster-$port
cleanup() {
    cluster_stop "$cluster" || true
    rm -rf "$cluster"
}
cleanup  # a cluster left behind by a killed run
trap cleanup EXIT

log "starting a throwaway cluster on 127.0.0.1:$port"
# Durability is irrelevant for a cluster deleted at exit; commit visibility is unchanged.
cluster_init "$cluster" "$port" "fsync = off
full_page_writes = off
synchronous_commit = off"
cluster_start "$cluster"
password=$(random_secret)
ensure_app_database "$cluster" "$port" "$password"
edition=$(cluster_timescaledb_edition "$cluster" "$port")
log "TimescaleDB edition: $edition$([ "$edition" = apache ] && echo ' (TSL-only tests will be skipped)')"

export DATABASE_URL="postgres://$APP_ROLE:$password@127.0.0.1:$port/$APP_DB"
export DJANGO_SECRET_KEY=$(random_secret) JWT_SIGNING_KEY=$(random_secret)
export DJANGO_ALLOWED_HOSTS="testserver,localhost,127.0.0.1" DJANGO_DEBUG=0
export TEST_PG_CLUSTER_DIR=$cluster TEST_PG_PORT=$port

cd "$ROOT"
log "ruff"
"$VENV/bin/ruff" check .
"$VENV/bin/ruff" format --check .
log "migrations are complete"
"$VENV/bin/python" manage.py makemigrations --check --dry-run
log "pytest"
"$VENV/bin/python" -m pytest "$@"
# The benchmark harness at a tiny scale, so it never rots (its own cluster, gunicorn and nginx; < 60 s). Only for
# the whole suite: `make test ARGS=…` runs just the tests asked for.
if [ $# -eq 0 ]; then
    log "benchmark smoke run (make bench-smoke)"
    "$VENV/bin/python" -m bench smoke >/dev/null
fi
