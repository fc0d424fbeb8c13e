# Everything runs without Docker on Debian/Ubuntu (root or sudo); see README.md.
.PHONY: test run stop reset psql lint format bench bench-smoke bench-soak

# Pytest arguments: make test ARGS="tests/iothub -k health"
ARGS ?=
# TimescaleDB edition for make test/run/bench: timescale or apache (default: both for test, else the fullest)
export EDITION
# A TimescaleDB source archive to build the community edition from (default: ../shared/vendor/… when present)
export TIMESCALEDB_SOURCE
# One statement for make psql: make psql SQL="SELECT 1"; make psql READONLY=1 connects as the read-only role
export SQL READONLY
# How long make bench-soak holds 10x nominal load: 90, 90s, 15m, 2h
DURATION ?= 10m
# Query dataset size for make bench: x 100 devices (see docs/performance.md); beyond 100 devices one day of history
# per device unless DAYS says otherwise. PHASES=queries,storage runs only those measurements.
SCALE ?= 0.05
DAYS ?=
PHASES ?=

test:
	@bash scripts/dev/test.sh $(ARGS)

run:
	@bash scripts/dev/run.sh

stop:
	@bash scripts/dev/stop.sh

# Stops make run and deletes its local state (cluster, data, secrets, certificate): a fresh start.
reset:
	@bash scripts/dev/reset.sh

psql:
	@bash scripts/dev/psql.sh

# Benchmarks (docs/performance.md): each starts and stops its own cluster, app servers and nginx.
bench:
	@bash bench/run.sh full --scale $(SCALE) $(if $(DAYS),--days $(DAYS)) $(if $(PHASES),--phases $(PHASES))

bench-smoke:
	@bash bench/run.sh smoke

bench-soak:
	@bash bench/run.sh soak --duration $(DURATION)

lint:
	@.venv/bin/ruff check . && .venv/bin/ruff format --check .

format:
	@.venv/bin/ruff check --fix . && .venv/bin/ruff format .
