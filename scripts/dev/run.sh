#!/usr/bin/env bash
# `make run`: the stack without Docker — a persistent cluster, migrations, granian serving HTTPS on
# https://localhost:8443 and the worker. Returns once the health endpoint answers; `make stop` stops it all.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

ensure_system_packages
ensure_python

state=$(state_dir)
cluster=$state/pg
port=${IOTHUB_PG_PORT:-54329}
https_port=${IOTHUB_HTTPS_PORT:-8443}
mkdir -p "$state/logs" "$state/tls"

# Secrets generated on the first run and kept (mode 600) with the cluster they belong to.
env_file=$state/run.env
if [ ! -f "$env_file" ]; then
    umask 077
    cat >"$env_file" <<ENV
DB_PASSWORD=$(random_secret)
DJANGO_SECRET_KEY=$(random_secret)
JWT_SIGNING_KEY=$(random_secret)
ENV
    umask 022
fi
# The read-only role's password (make psql READONLY=1), added to a state made before the role existed.
if ! grep -q '^IOTHUB_READONLY_PASSWORD=' "$env_file"; then
    echo "IOTHUB_READONLY_PASSWORD=$(random_secret)" >>"$env_file"
fi
set -a
# shellcheck disable=SC1090
source "$env_file"
set +a

# The edition is chosen when the cluster is created (EDITION=timescale|apache, default the fullest the library
# serves) and kept: the database records it when migrated (iothub/edition.py). `make reset` starts over.
edition=$(chosen_edition)
log "PostgreSQL + TimescaleDB on 127.0.0.1:$port ($cluster)"
cluster_init "$cluster" "$port" "$(edition_conf "$edition")"
cluster_start "$cluster"
ensure_app_database "$cluster" "$port" "$DB_PASSWORD"
log "TimescaleDB edition: $(cluster_timescaledb_edition "$cluster" "$port")"

if [ -z "${TLS_CERT_FILE:-}" ]; then
    TLS_CERT_FILE=$state/tls/cert.pem TLS_KEY_FILE=$state/tls/key.pem
    if [ ! -f "$TLS_CERT_FILE" ]; then
        log "generating a self-signed certificate for localhost"
        openssl req -x509 -newkey rsa:2048 -nodes -days 365 -subj /CN=localhost \
            -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
            -keyout "$TLS_KEY_FILE" -out "$TLS_CERT_FILE" 2>/dev/null
        chmod 600 "$TLS_KEY_FILE"
    fi
fi

export DATABASE_URL="postgres://$APP_ROLE:$DB_PASSWORD@127.0.0.1:$port/$APP_DB"
export DJANGO_ALLOWED_HOSTS=${DJANGO_ALLOWED_HOSTS:-localhost,127.0.0.1}
export DJANGO_STATIC_ROOT=$state/static
# Clients reach the app server directly, with no proxy: none of them may name its own address in X-Forwarded-For.
export TRUSTED_PROXIES=${TRUSTED_PROXIES-}
# No HSTS pinning of "localhost" in the developer's browser.
export DJANGO_SECURE_HSTS_SECONDS=${DJANGO_SECURE_HSTS_SECONDS:-0}

cd "$ROOT"
manage() { "$VENV/bin/python" manage.py "$@"; }
manage check
manage migrate --noinput
manage readonly_role
manage apply_timescale_policies
manage collectstatic --noinput >/dev/null
manage ensure_superuser

pidfile() { echo "$state/$1.pid"; }
running() { [ -f "$(pidfile "$1")" ] && kill -0 "$(cat "$(pidfile "$1")")" 2>/dev/null; }

if ! running web; then
    log "granian (iothub/serve.py) on https://localhost:$https_port"
    # Its output to a file of its own: Django logs there (the stack trace behind every 500).
    WEB_BIND=127.0.0.1:$https_port WEB_CERTFILE=$TLS_CERT_FILE WEB_KEYFILE=$TLS_KEY_FILE \
        WEB_ACCESS_LOG=$state/logs/access.log WEB_PID_FILE="$(pidfile web)" \
        nohup "$VENV/bin/python" -m iothub.serve >>"$state/logs/web.log" 2>&1 &
fi
if ! running worker; then
    log "worker"
    nohup "$VENV/bin/python" manage.py run_worker >>"$state/logs/worker.log" 2>&1 &
    echo $! >"$(pidfile worker)"
fi

health=https://localhost:$https_port/api/v1/health/
for _ in $(seq 60); do
    if curl -fsS --cacert "$TLS_CERT_FILE" "$health" >/dev/null 2>&1; then
        cat <<MSG

IoT Hub is running: https://localhost:$https_port/
  API docs     https://localhost:$https_port/api/v1/docs/
  Admin        https://localhost:$https_port/admin/
  Certificate  $TLS_CERT_FILE (self-signed: curl --cacert it, or -k)
  Log in       as \$DJANGO_SUPERUSER_USERNAME if you set it, or create an admin:
               .venv/bin/python manage.py createsuperuser  (with the variables from $env_file)
  Logs         $state/logs/
  Stop         make stop
MSG
        exit 0
    fi
    sleep 1
done
die "the health endpoint did not answer at $health (logs in $state/logs)"
