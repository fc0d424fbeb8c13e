# Shared by the make targets (sourced, not run): the Python venv, PostgreSQL clusters and secrets for local use.
# shellcheck shell=bash

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
PG_MAJOR=15
PG_BIN=/usr/lib/postgresql/$PG_MAJOR/bin
VENV=$ROOT/.venv
APP_ROLE=iothub
APP_DB=iothub

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

is_root() { [ "$(id -u)" -eq 0 ]; }

# PostgreSQL refuses to run as root: as root, clusters belong to the postgres user (run from / since the
# caller's directory may be closed to that user; every path we pass is absolute).
as_pg() {
    if is_root; then (cd / && runuser -u postgres -- "$@"); else "$@"; fi
}

random_secret() { head -c 48 /dev/urandom | base64 | tr -d '\n/+=' | cut -c1-48; }

ensure_system_packages() {
    bash "$ROOT/scripts/dev/ensure-packages.sh"
}

is_python313() { [ -x "$1" ] && "$1" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 13))' 2>/dev/null; }

# A working Python 3.13: $PYTHON, python3.13 on the PATH, or a pyenv installation (whose shims only work when
# 3.13 is the active version, hence the check that each candidate really runs).
find_python313() {
    local candidate root
    root=$(pyenv root 2>/dev/null || echo "$HOME/.pyenv")
    for candidate in "${PYTHON:-}" "$(command -v python3.13 || true)" "$root"/versions/3.13*/bin/python3 \
        /usr/local/bin/python3.13 /usr/bin/python3.13; do
        if [ -n "$candidate" ] && is_python313 "$candidate"; then
            echo "$candidate"
            return
        fi
    done
    return 1
}

# .venv with Python 3.13 and the pinned requirements; reinstalls only when a requirements file changed.
ensure_python() {
    if ! is_python313 "$VENV/bin/python"; then
        local python
        python=$(find_python313) || die "Python 3.13 not found (Django 6 needs >= 3.12). Install it with
    pyenv install 3.13    (or your distribution's python3.13 with its venv module)
and run again, or point PYTHON=/path/to/python3.13 at one."
        log "creating .venv with $python"
        rm -rf "$VENV"
        "$python" -m venv "$VENV"
    fi
    local want
    want=$(cat "$ROOT"/requirements*.txt | sha256sum | cut -d' ' -f1)
    if [ "$(cat "$VENV/.requirements.sha256" 2>/dev/null)" != "$want" ]; then
        log "installing Python requirements"
        "$VENV/bin/pip" install -q --disable-pip-version-check -r "$ROOT/requirements-dev.txt"
        echo "$want" >"$VENV/.requirements.sha256"
    fi
}

# Where clusters and generated state live: $IOTHUB_STATE_DIR if set (tests run make run in a folder of their own),
# else .local/ in the work tree, unless the postgres user cannot reach it (a clone inside a mode-700 directory),
# then a per-work-tree folder under /var/tmp.
state_dir() {
    if [ -n "${IOTHUB_STATE_DIR:-}" ]; then
        mkdir -p "$IOTHUB_STATE_DIR"
        echo "$IOTHUB_STATE_DIR"
        return
    fi
    local dir=$ROOT/.local
    mkdir -p "$dir"
    if is_root && ! runuser -u postgres -- test -x "$dir" 2>/dev/null; then
        dir=/var/tmp/iothub-$(printf '%s' "$ROOT" | sha256sum | cut -c1-12)
        mkdir -p "$dir"
    fi
    echo "$dir"
}

# cluster_init DIR PORT [EXTRA_CONF]: a cluster in DIR/data, listening on 127.0.0.1:PORT and a socket in DIR.
cluster_init() {
    local dir=$1 port=$2 extra=${3:-}
    [ -f "$dir/data/PG_VERSION" ] && return
    mkdir -p "$dir"
    is_root && chown postgres: "$dir"
    as_pg "$PG_BIN/initdb" -D "$dir/data" -U postgres -E UTF8 --locale=C.UTF-8 \
        --auth-local=trust --auth-host=scram-sha-256 >/dev/null
    cat >>"$dir/data/postgresql.conf" <<EOF

# IoT Hub
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$dir'
shared_preload_libraries = 'timescaledb'
max_connections = 200
# Each database with TimescaleDB uses a background worker, test databases included.
max_worker_processes = 32
timescaledb.max_background_workers = 16
$extra
EOF
}

cluster_running() { [ -f "$1/data/postmaster.pid" ] && as_pg "$PG_BIN/pg_ctl" -D "$1/data" status >/dev/null 2>&1; }

cluster_start() {
    local dir=$1
    cluster_running "$dir" && return
    as_pg "$PG_BIN/pg_ctl" -D "$dir/data" -l "$dir/postgres.log" -w -t 60 start >/dev/null \
        || { tail -n 20 "$dir/postgres.log" >&2; die "PostgreSQL did not start (log: $dir/postgres.log)"; }
}

cluster_stop() {
    local dir=$1
    cluster_running "$dir" || return 0
    as_pg "$PG_BIN/pg_ctl" -D "$dir/data" -m fast -w -t 60 stop >/dev/null
}

# cluster_psql DIR PORT SQL...: as the cluster's superuser, over the private socket.
cluster_psql() {
    local dir=$1 port=$2
    shift 2
    as_pg "$PG_BIN/psql" -h "$dir" -p "$port" -U postgres -d postgres -v ON_ERROR_STOP=1 -qAt "$@"
}

# ensure_app_database DIR PORT PASSWORD: a non-superuser role that owns the app database and may create the
# test database and the read-only role (manage.py readonly_role); TimescaleDB and uuid-ossp are trusted
# extensions, so the owner creates them in migrations.
ensure_app_database() {
    local dir=$1 port=$2 password=$3
    cluster_psql "$dir" "$port" -v role="$APP_ROLE" -v password="$password" <<'SQL'
SELECT format('CREATE ROLE %I LOGIN CREATEDB CREATEROLE', :'role') WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'role')
\gexec
ALTER ROLE :"role" WITH LOGIN CREATEDB CREATEROLE NOSUPERUSER PASSWORD :'password';
SQL
    cluster_psql "$dir" "$port" -v role="$APP_ROLE" -v db="$APP_DB" <<'SQL'
SELECT format('CREATE DATABASE %I OWNER %I', :'db', :'role') WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = :'db')
\gexec
SQL
}

# TimescaleDB editions. The community build (timescaledb-tsl-*.so present) serves both: a cluster whose
# postgresql.conf says `timescaledb.license = 'apache'` behaves as the Apache-2 build. An Apache-only build
# serves only "apache".
library_editions() {
    if ls "$("$PG_BIN/pg_config" --pkglibdir)"/timescaledb-tsl-*.so >/dev/null 2>&1; then
        echo "timescale apache"
    else
        echo "apache"
    fi
}

# The edition a command runs on: $EDITION if given (checked against the library), else the fullest available.
chosen_edition() {
    local available
    available=$(library_editions)
    if [ -n "${EDITION:-}" ]; then
        case " $available " in
            *" $EDITION "*) echo "$EDITION" ;;
            *) die "EDITION=$EDITION is not available: this TimescaleDB build serves '$available' (the community
edition is built from a source archive: TIMESCALEDB_SOURCE=/path/to/timescaledb-2.19.3.tar.gz)" ;;
        esac
    else
        echo "${available%% *}"
    fi
}

# The postgresql.conf lines that select EDITION on the community build.
edition_conf() {
    [ "$1" = apache ] && echo "timescaledb.license = 'apache'" || true
}

# The edition a running cluster really serves: what current_setting() says once the extension is loaded, in a
# scratch database (the setting reads NULL in a database without the extension).
cluster_timescaledb_edition() {
    local dir=$1 port=$2 probe=edition_probe
    cluster_psql "$dir" "$port" -c "DROP DATABASE IF EXISTS $probe" -c "CREATE DATABASE $probe" >/dev/null
    as_pg "$PG_BIN/psql" -h "$dir" -p "$port" -U postgres -d "$probe" -v ON_ERROR_STOP=1 -qAt \
        -c "SET client_min_messages = warning" -c "CREATE EXTENSION timescaledb" \
        -c "SELECT current_setting('timescaledb.license')"
    cluster_psql "$dir" "$port" -c "DROP DATABASE $probe" >/dev/null
}
