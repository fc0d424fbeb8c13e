#!/usr/bin/env bash
# Installs what `make test` and `make run` need from Debian: PostgreSQL 15 server + headers, curl, openssl, nginx
# (the proxy's end-to-end test), wrk (the benchmarks' load generator), and TimescaleDB 2.19.x:
# - the full (community/TSL) edition, built from a source archive when one is available: $TIMESCALEDB_SOURCE, or by
#   default ../shared/vendor/timescaledb-2.19.3.tar.gz beside the project. It replaces an Apache-only build of the
#   same version (one without timescaledb-tsl-*.so). One build serves both editions: a cluster started with
#   `timescaledb.license = 'apache'` behaves as the Apache-2 build.
# - otherwise the Apache-2 edition, built from Debian 13's source package (Debian 12 does not package it).
# Idempotent and quick when everything is present. Builds happen outside any git work tree (TimescaleDB's build asks
# git for a version and would find ours). The trixie deb-src entry lives in a private, temporary apt configuration:
# the system's sources stay untouched.
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
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
source_archive=${TIMESCALEDB_SOURCE:-$ROOT/../shared/vendor/timescaledb-2.19.3.tar.gz}
[ -f "$source_archive" ] || source_archive=
if [ -n "${TIMESCALEDB_SOURCE:-}" ] && [ -z "$source_archive" ]; then
    echo "error: TIMESCALEDB_SOURCE=$TIMESCALEDB_SOURCE is not a file" >&2
    exit 1
fi

# The archive's version, from its top folder (timescaledb-X.Y.Z/).
# (awk reads the whole listing: `head` would close the pipe and fail the script under pipefail).
archive_version() { tar -tzf "$1" | awk -F/ 'NR == 1 {sub(/^timescaledb-/, "", $1); print $1}'; }

if [ -n "$source_archive" ]; then
    version=$(archive_version "$source_archive")
    [ -f "$pkglibdir/timescaledb-tsl-$version.so" ] && [ -f "$pkglibdir/timescaledb-$version.so" ] && exit 0
elif ls "$pkglibdir"/timescaledb.so >/dev/null 2>&1; then
    exit 0
fi

pkgs=$(missing_packages dpkg-dev cmake libssl-dev gcc make)
if [ -n "$pkgs" ]; then
    log "installing build tools: $pkgs"
    # shellcheck disable=SC2086
    apt_install $pkgs
fi
need_root "TimescaleDB"

build_dir=$(mktemp -d /tmp/iothub-timescaledb.XXXXXX)
trap 'rm -rf "$build_dir"' EXIT
chmod 755 "$build_dir"  # apt downloads as the _apt user

# build SRC EDITION_LABEL [CMAKE_ARGS...]
build() {
    local src=$1 label=$2
    shift 2
    log "building $(basename "$src") ($label) for PostgreSQL $PG_MAJOR"
    (
        cd "$src"
        ./bootstrap -DPG_CONFIG="$PG_CONFIG" -DREGRESS_CHECKS=OFF -DTAP_CHECKS=OFF -DUSE_TELEMETRY=OFF \
            -DWARNINGS_AS_ERRORS=OFF -DCMAKE_BUILD_TYPE=Release "$@" >/dev/null
        make -C build -j"$(nproc)" >/dev/null
        make -C build install >/dev/null
    )
    log "installed $(ls "$pkglibdir"/timescaledb*.so | tr '\n' ' ')"
}

if [ -n "$source_archive" ]; then
    tar -xzf "$source_archive" -C "$build_dir"
    build "$build_dir/timescaledb-$version" "community edition from $source_archive, serves both editions"
    exit 0
fi

mkdir -p "$build_dir/lists/partial" "$build_dir/sources.list.d" "$build_dir/src"
echo "deb-src $(debian_mirror) trixie main" >"$build_dir/sources.list"
apt_opts=(-o "Dir::Etc::SourceList=$build_dir/sources.list" -o "Dir::Etc::SourceParts=$build_dir/sources.list.d"
    -o "Dir::State::Lists=$build_dir/lists")

log "fetching TimescaleDB source from Debian trixie"
apt-get "${apt_opts[@]}" update -qq
version=$(apt-cache "${apt_opts[@]}" showsrc timescaledb | awk '/^Version:/ {print $2; exit}')
case "$version" in
    $TIMESCALEDB_SERIES.*) ;;
    *) echo "error: trixie offers timescaledb '$version', expected $TIMESCALEDB_SERIES.x" >&2; exit 1 ;;
esac
(cd "$build_dir/src" && apt-get "${apt_opts[@]}" source -qq timescaledb >/dev/null)
src=$(find "$build_dir/src" -mindepth 1 -maxdepth 1 -type d -name 'timescaledb-*' | head -n1)
build "$src" "Apache-2 edition" -DAPACHE_ONLY=ON
