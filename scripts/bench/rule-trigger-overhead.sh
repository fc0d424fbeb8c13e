#!/usr/bin/env bash
# The rule trigger's overhead: 100k readings (100 devices, batches of 1,000, one transaction each) inserted with
# 0, 10 and 100 enabled rules (1 % of readings breaching), with the telemetry_evaluate_rules trigger vs with it
# ignored (pgtrigger.ignore), alternating batch by batch. Starts a throwaway cluster like `make test` (same settings)
# and removes it at exit. Goal: ratio <= 1.25 at 100 rules.
# Usage: bash scripts/bench/rule-trigger-overhead.sh [--rounds N] [--rules 0,10,100] [--breach 0.01] [--readings N]
set -euo pipefail
source "$(dirname "$0")/../dev/lib.sh"

ensure_system_packages
ensure_python

port=${BENCH_PG_PORT:-55450}
cluster=$(state_dir)/bench-cluster-$port
cleanup() {
    cluster_stop "$cluster" || true
    rm -rf "$cluster"
}
cleanup
trap cleanup EXIT

cluster_init "$cluster" "$port" "fsync = off
full_page_writes = off
synchronous_commit = off"
cluster_start "$cluster"
password=$(random_secret)
ensure_app_database "$cluster" "$port" "$password"

export DATABASE_URL="postgres://$APP_ROLE:$password@127.0.0.1:$port/$APP_DB"
export DJANGO_SECRET_KEY=$(random_secret) JWT_SIGNING_KEY=$(random_secret) DJANGO_DEBUG=0 DJANGO_ALLOWED_HOSTS=localhost
cd "$ROOT"
"$VENV/bin/python" manage.py migrate --skip-checks -v 0
"$VENV/bin/python" scripts/bench/rule_trigger_overhead.py "$@"
