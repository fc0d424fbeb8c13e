#!/usr/bin/env bash
# `make reset`: stops what `make run` started and deletes the local state — the cluster and its data, the generated
# secrets and certificate, logs. The next `make run` starts from an empty database, on the edition it then chooses.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

bash "$ROOT/scripts/dev/stop.sh"
state=$(state_dir)
log "deleting $state"
rm -rf "$state"
