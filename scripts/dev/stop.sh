#!/usr/bin/env bash
# `make stop`: stops what `make run` started — the app server, the worker and the cluster. Data is kept.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

state=$(state_dir)
# gunicorn: the app server of a `make run` started before granian replaced it.
for name in web gunicorn worker; do
    pidfile=$state/$name.pid
    [ -f "$pidfile" ] || continue
    pid=$(cat "$pidfile")
    if kill -0 "$pid" 2>/dev/null; then
        log "stopping $name ($pid)"
        kill -TERM "$pid"
        for _ in $(seq 30); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
        kill -0 "$pid" 2>/dev/null && kill -KILL "$pid"
    fi
    rm -f "$pidfile"
done
if cluster_running "$state/pg"; then
    log "stopping PostgreSQL"
    cluster_stop "$state/pg"
fi
