#!/bin/sh
# The image's entrypoint (see docker-compose.yml):
#   init    one-shot, as root: generates the secrets (kept across restarts), and a self-signed certificate unless
#           one is mounted
#   web     waits for the database, migrates and applies the TimescaleDB policies (one web container at a time),
#           ensures the admin, runs granian
#   worker  waits for the migrations, runs manage.py run_worker
# Anything else runs as given, with the same environment: `docker compose run --rm web manage.py shell`.
set -eu

SECRETS_DIR=${IOTHUB_SECRETS_DIR:-/run/iothub-secrets}
CERTS_DIR=${IOTHUB_CERTS_DIR:-/etc/iothub/certs}
# The image's `app` group: it reads the generated secrets.
APP_GID=10001

log() { printf 'entrypoint: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

# write_secret NAME [VALUE]: SECRETS_DIR/NAME with VALUE or a random one, unless it already exists.
write_secret() {
    file=$SECRETS_DIR/$1
    [ -s "$file" ] && return
    # Written beside and renamed: an interrupted run never leaves an empty secret behind.
    printf '%s' "${2:-$(openssl rand -hex 32)}" >"$file.tmp"
    chmod 0640 "$file.tmp"
    [ -n "$app_group" ] && chgrp "$app_group" "$file.tmp"
    mv "$file.tmp" "$file"
    log "wrote $file"
}

init() {
    umask 027
    mkdir -p "$SECRETS_DIR" "$CERTS_DIR"
    # Outside the image (tests) there may be no such group: the files then keep the caller's group.
    app_group=
    if [ "$(id -u)" -eq 0 ] && getent group "$APP_GID" >/dev/null 2>&1; then
        app_group=$APP_GID
        chgrp "$app_group" "$SECRETS_DIR"
    fi
    chmod 0750 "$SECRETS_DIR"
    # The database is initialised with this file: a POSTGRES_PASSWORD given on the first start is the one kept.
    write_secret postgres_password "${POSTGRES_PASSWORD:-}"
    write_secret django_secret_key
    write_secret jwt_signing_key
    # A first admin named without a password (nor _FILE) gets a generated one: nothing secret in the environment,
    # so `docker compose config` shows none. Read it with
    # `docker compose exec web cat /run/iothub-secrets/django_superuser_password`.
    if [ -n "${DJANGO_SUPERUSER_USERNAME:-}" ] && [ -z "${DJANGO_SUPERUSER_PASSWORD:-}" ] \
        && [ -z "${DJANGO_SUPERUSER_PASSWORD_FILE:-}" ]; then
        write_secret django_superuser_password
    fi

    # A mounted certificate is kept; this one is a placeholder until a real one is mounted.
    if [ ! -s "$CERTS_DIR/tls.crt" ]; then
        cn=${TLS_COMMON_NAME:-localhost}
        san=DNS:localhost,IP:127.0.0.1
        case $cn in
            localhost | 127.0.0.1) ;;
            *[!0-9.]*) san=$san,DNS:$cn ;;
            *) san=$san,IP:$cn ;;
        esac
        # No configuration file: the distribution's would add CA extensions to a server certificate.
        openssl req -x509 -config /dev/null -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 3650 \
            -subj "/CN=$cn" -addext "subjectAltName=$san" \
            -addext "basicConstraints=critical,CA:FALSE" -addext "extendedKeyUsage=serverAuth" \
            -keyout "$CERTS_DIR/tls.key" -out "$CERTS_DIR/tls.crt.tmp"
        chmod 0600 "$CERTS_DIR/tls.key"
        chmod 0644 "$CERTS_DIR/tls.crt.tmp"
        mv "$CERTS_DIR/tls.crt.tmp" "$CERTS_DIR/tls.crt"
        log "generated a self-signed certificate for $cn in $CERTS_DIR (mount a real one there to replace it)"
    fi
    # Every start says so: a later one, with everything kept, would otherwise leave an empty log.
    log "secrets in $SECRETS_DIR and the certificate in $CERTS_DIR are ready"
}

# load_secret NAME FILE: NAME from the environment, else from NAME_FILE, else from the file init generated.
load_secret() {
    eval "value=\${$1:-} file=\${$1_FILE:-}"
    if [ -z "$value" ]; then
        if [ -n "$file" ]; then
            value=$(cat "$file")
        elif [ -r "$SECRETS_DIR/$2" ]; then
            value=$(cat "$SECRETS_DIR/$2")
            export "$1_GENERATED=1"
        fi
    fi
    if [ -n "$value" ]; then
        export "$1=$value"
    fi
}

load_environment() {
    load_secret DJANGO_SECRET_KEY django_secret_key
    load_secret JWT_SIGNING_KEY jwt_signing_key
    load_secret DJANGO_SUPERUSER_PASSWORD django_superuser_password
    if [ -z "${DATABASE_URL:-}" ]; then
        load_secret POSTGRES_PASSWORD postgres_password
        if [ -n "${POSTGRES_PASSWORD:-}" ]; then
            # Quoted: a password given by hand may hold characters with a meaning in URLs.
            DATABASE_URL=$(python -c 'import os, urllib.parse as u
q = lambda name, default: u.quote(os.environ.get(name) or default, safe="")
print("postgres://%s:%s@%s:%s/%s" % (q("POSTGRES_USER", "iothub"), q("POSTGRES_PASSWORD", ""),
      q("POSTGRES_HOST", "db"), q("POSTGRES_PORT", "5432"), q("POSTGRES_DB", "iothub")))')
            export DATABASE_URL
        fi
    fi
}

require_environment() {
    [ -n "${DJANGO_SECRET_KEY:-}" ] || die "DJANGO_SECRET_KEY is not set and $SECRETS_DIR holds no generated key:
set it (or DJANGO_SECRET_KEY_FILE), or let the init service run first (docker compose up does)."
    [ -n "${DATABASE_URL:-}" ] || die "DATABASE_URL is not set and no database password was found: set
POSTGRES_PASSWORD (or DATABASE_URL), or let the init service run first (docker compose up does)."
}

wait_for_database() {
    log "waiting for the database"
    python - <<'EOF' || die "the database did not answer within ${STARTUP_TIMEOUT:-300} s"
import os, sys, time

import django
from django.db import connection
from django.db.utils import OperationalError

django.setup()
deadline = time.monotonic() + int(os.environ.get("STARTUP_TIMEOUT", "300"))
while True:
    try:
        connection.ensure_connection()
        break
    except OperationalError as exc:
        if time.monotonic() > deadline:
            print(exc, file=sys.stderr)
            sys.exit(1)
        time.sleep(2)
EOF
}

export DJANGO_SETTINGS_MODULE="${DJANGO_SETTINGS_MODULE:-iothub.settings}"

case ${1:-web} in
    init)
        init
        ;;
    web)
        load_environment
        require_environment
        wait_for_database
        python manage.py check
        # migrate, the read-only role for dashboards (NOLOGIN until IOTHUB_READONLY_PASSWORD or _FILE is given) and
        # the TimescaleDB policies, under an advisory lock: several web containers starting at once take turns.
        python manage.py prepare_database
        created=$(python manage.py ensure_superuser)
        echo "$created"
        # Said once, when the admin is created: nothing else tells a user who started with a bare `up`.
        case $created in
            *created*)
                if [ -n "${DJANGO_SUPERUSER_PASSWORD_GENERATED:-}" ]; then
                    log "the admin's password was generated; read it with:" \
                        "docker compose exec web cat $SECRETS_DIR/django_superuser_password"
                fi
                ;;
        esac
        # iothub/serve.py: granian on 0.0.0.0:8000, workers and threads from the environment.
        exec python -m iothub.serve
        ;;
    worker)
        load_environment
        require_environment
        wait_for_database
        # The web service migrates; the worker starts on the schema it expects.
        deadline=$(($(date +%s) + ${STARTUP_TIMEOUT:-300}))
        until python manage.py migrate --check >/dev/null 2>&1; do
            [ "$(date +%s)" -lt "$deadline" ] || die "migrations were not applied within ${STARTUP_TIMEOUT:-300} s"
            log "waiting for the web service to apply the migrations"
            sleep 3
        done
        exec python manage.py run_worker
        ;;
    manage.py)
        load_environment
        exec python "$@"
        ;;
    *)
        load_environment
        exec "$@"
        ;;
esac
