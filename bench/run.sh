#!/usr/bin/env bash
# `make bench`, `make bench-smoke`, `make bench-soak DURATION=…`: installs what is missing (like `make test`),
# then runs `python -m bench MODE [ARGS]`, which starts its own cluster, app servers and nginx and stops them at exit.
set -euo pipefail
source "$(dirname "$0")/../scripts/dev/lib.sh"

ensure_system_packages
ensure_python
cd "$ROOT"
exec "$VENV/bin/python" -m bench "$@"
