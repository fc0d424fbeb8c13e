#!/usr/bin/env bash
# `make test`: installs what is missing, then on each TimescaleDB edition the library serves (the community edition
# and the Apache-2 one when TimescaleDB was built from its full source, see ensure-packages.sh) starts a throwaway
# PostgreSQL 15 cluster on a private port and socket and runs pytest against it; always removes the clusters.
# ruff and the migrations check run once, before; the benchmark smoke run once, after. Fails if any run fails.
# Arguments go to pytest (`make test ARGS="tests/iothub -k health"`); `make test EDITION=timescale|apache` runs
# one edition. The second edition's run leaves out the stages that don't depend on the edition (tests/conftest.py:
# RUN_ONCE_PATHS).
set -euo pipefail
source "$(dirname "$0")/lib.sh"

ensure_system_packages
ensure_python

if [ -n "${EDITION:-}" ]; then
    editions=$(chosen_edition)
else
    editions=$(library_editions)
    [ "$editions" = apache ] && log "this TimescaleDB build is Apache-2 only: TSL tests will be skipped" \
        "(TIMESCALEDB_SOURCE=/path/to/timescaledb-2.19.3.tar.gz make test builds the community edition)"
fi

base_port=${TEST_PG_PORT:-55432}
state=$(state_dir)
cluster=
cleanup() {
    [ -n "$cluster" ] || return 0
    cluster_stop "$cluster" || true
    rm -rf "$cluster"
}
trap cleanup EXIT

cd "$ROOT"
log "ruff"
"$VENV/bin/ruff" check .
"$VENV/bin/ruff" format --check .

export DJANGO_SECRET_KEY=$(random_secret) JWT_SIGNING_KEY=$(random_secret)
export DJANGO_ALLOWED_HOSTS="testserver,localhost,127.0.0.1" DJANGO_DEBUG=0

# run_suite EDITION PORT FIRST [PYTEST ARGS...]: pytest on a fresh cluster serving EDITION; its summary in $state.
run_suite() {
    local edition=$1 port=$2 first=$3
    shift 3
    cluster=$state/test-cluster-$port
    cleanup  # a cluster left behind by a killed run
    log "[$edition] starting a throwaway cluster on 127.0.0.1:$port"
    # Durability is irrelevant for a cluster deleted at exit; commit visibility is unchanged.
    cluster_init "$cluster" "$port" "fsync = off
full_page_writes = off
synchronous_commit = off
$(edition_conf "$edition")"
    cluster_start "$cluster"
    local password served
    password=$(random_secret)
    ensure_app_database "$cluster" "$port" "$password"
    served=$(cluster_timescaledb_edition "$cluster" "$port")
    [ "$served" = "$edition" ] || die "the cluster serves TimescaleDB edition '$served', not '$edition'"
    log "[$edition] TimescaleDB edition: $served"

    export DATABASE_URL="postgres://$APP_ROLE:$password@127.0.0.1:$port/$APP_DB"
    export TEST_PG_CLUSTER_DIR=$cluster TEST_PG_PORT=$port TEST_TIMESCALEDB_EDITION=$edition
    export TEST_RUN_ONCE_STAGES=$([ -n "$first" ] && echo 1 || echo 0)
    if [ -n "$first" ]; then
        log "[$edition] migrations are complete"
        "$VENV/bin/python" manage.py makemigrations --check --dry-run
    fi
    log "[$edition] pytest"
    local output=$state/pytest-$edition.log status=0
    "$VENV/bin/python" -m pytest "$@" 2>&1 | tee "$output" || status=${PIPESTATUS[0]}
    # 5: nothing collected, as when every test asked for runs only once and ran on the first edition.
    [ "$status" -eq 5 ] && [ -z "$first" ] && status=0
    # pytest's closing line, with or without its rule of '=' (-q drops it).
    summary=$(grep -E '^(=+ )?[0-9]+ (passed|failed|errors?|skipped|deselected).* in [0-9.]+s' "$output" | tail -n1 \
        | sed -E 's/^=+ | =+$//g' || true)
    summaries+=("$edition edition: ${summary:-no summary (exit $status)}")
    cluster_stop "$cluster" || true
    rm -rf "$cluster"
    cluster=
    return "$status"
}

summaries=()
failed=0
first=1
port=$base_port
for edition in $editions; do
    run_suite "$edition" "$port" "$first" "$@" || failed=1
    first=
    port=$((port + 1))
done

# The benchmark harness at a tiny scale, so it never rots (its own cluster, app servers and nginx; < 60 s). Only for
# the whole suite: `make test ARGS=…` runs just the tests asked for.
if [ $# -eq 0 ] && [ "$failed" -eq 0 ]; then
    log "benchmark smoke run (make bench-smoke)"
    EDITION=${editions%% *} "$VENV/bin/python" -m bench smoke >/dev/null
fi

for summary in "${summaries[@]}"; do
    log "$summary"
done
exit "$failed"
