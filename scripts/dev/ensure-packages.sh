#!/usr/bin/env bash
# Installs what `make test` and `make run` need from Debian: PostgreSQL 15 server + headers, curl, openssl, nginx
# (the proxy's end-to-end test), wrk (the benchmarks' load generator), and TimescaleDB 2.19.x built from Debian 13's
# source package (Debian 12 does not package it). Idempotent and quick when everything is present.
# The trixie deb-src entry lives in a private, temporary apt configuration: the system's sources stay untouched.
set -euo pipefail

PG_MAJOR=15
TIMESCALEDB_SERIES=2.19

log() { printf '==> %s\n' "$*" >&2; }

need_root() {
    if [ "$(id -u)" -ne 0 ]; then
        echo "error: installing $1 needs root (run as root, or install it yourself)" >&2
        exit 1
    fi
}

apt_updated=
apt_install() {
    need_root "$*"
    if [ -z "$apt_updated" ]; then
        DEBIAN_FRONTEND=noninteractive apt-get update -qq
        apt_updated=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

missing_packages() {
    local pkg
    for pkg in "$@"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || echo "$pkg"
    done
}

# The mirror this machine already uses, from deb822 sources or the classic sources.list.
debian_mirror() {
    local uri
    uri=$(grep -hsE '^URIs:' /etc/apt/sources.list.d/*.sources | awk '{print $2}' | grep -v security | head -n1 || true)
    if [ -z "$uri" ]; then
        uri=$(grep -hsE '^deb ' /etc/apt/sources.list /etc/apt/sources.list.d/*.list \
            | awk '{for (i = 2; i <= NF; i++) if ($i ~ /^https?:/) {print $i; exit}}' | grep -v security | head -n1 || true)
    fi
    echo "${uri:-http://deb.debian.org/debian}"
}

# PostgreSQL first: installing the headers may upgrade the server's minor version, and the build must follow it.
# shellcheck disable=SC2046
pkgs=$(missing_packages postgresql-$PG_MAJOR postgresql-server-dev-$PG_MAJOR postgresql-client-$PG_MAJOR \
    curl openssl nginx-light wrk)
if [ -n "$pkgs" ]; then
    log "installing $pkgs"
    # shellcheck disable=SC2086
    apt_install $pkgs
fi

PG_CONFIG=/usr/lib/postgresql/$PG_MAJOR/bin/pg_config
pkglibdir=$("$PG_CONFIG" --pkglibdir)
if ls "$pkglibdir"/timescaledb.so >/dev/null 2>&1; then
    exit 0
fi

pkgs=$(missing_packages dpkg-dev cmake libssl-dev gcc make)
if [ -n "$pkgs" ]; then
    log "installing build tools: $pkgs"
    # shellcheck disable=SC2086
    apt_install $pkgs
fi
need_root "TimescaleDB"

# Outside the work tree: TimescaleDB's build asks git for a version and would find ours.
apt_dir=$(mktemp -d /tmp/iothub-timescaledb.XXXXXX)
trap 'rm -rf "$apt_dir"' EXIT
chmod 755 "$apt_dir"  # apt downloads as the _apt user
mkdir -p "$apt_dir/lists/partial" "$apt_dir/sources.list.d" "$apt_dir/src"
echo "deb-src $(debian_mirror) trixie main" >"$apt_dir/sources.list"
apt_opts=(-o "Dir::Etc::SourceList=$apt_dir/sources.list" -o "Dir::Etc::SourceParts=$apt_dir/sources.list.d"
    -o "Dir::State::Lists=$apt_dir/lists")

log "fetching TimescaleDB source from Debian trixie"
apt-get "${apt_opts[@]}" update -qq
version=$(apt-cache "${apt_opts[@]}" showsrc timescaledb | awk '/^Version:/ {print $2; exit}')
case "$version" in
    $TIMESCALEDB_SERIES.*) ;;
    *) echo "error: trixie offers timescaledb '$version', expected $TIMESCALEDB_SERIES.x" >&2; exit 1 ;;
esac
(cd "$apt_dir/src" && apt-get "${apt_opts[@]}" source -qq timescaledb >/dev/null)
src=$(find "$apt_dir/src" -mindepth 1 -maxdepth 1 -type d -name 'timescaledb-*' | head -n1)

log "building TimescaleDB $version (Apache-2 edition) for PostgreSQL $PG_MAJOR"
(
    cd "$src"
    ./bootstrap -DPG_CONFIG="$PG_CONFIG" -DAPACHE_ONLY=ON -DREGRESS_CHECKS=OFF -DTAP_CHECKS=OFF \
        -DUSE_TELEMETRY=OFF -DWARNINGS_AS_ERRORS=OFF -DCMAKE_BUILD_TYPE=Release >/dev/null
    make -C build -j"$(nproc)" >/dev/null
    make -C build install >/dev/null
)
log "installed $(ls "$pkglibdir"/timescaledb*.so | tr '\n' ' ')"
