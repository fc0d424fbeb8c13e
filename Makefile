# Everything runs without Docker on Debian/Ubuntu (root or sudo); see README.md.
.PHONY: test run stop psql lint format

# Pytest arguments: make test ARGS="tests/iothub -k health"
ARGS ?=
# One statement for make psql: make psql SQL="SELECT 1"
export SQL

test:
	@bash scripts/dev/test.sh $(ARGS)

run:
	@bash scripts/dev/run.sh

stop:
	@bash scripts/dev/stop.sh

psql:
	@bash scripts/dev/psql.sh

lint:
	@.venv/bin/ruff check . && .venv/bin/ruff format --check .

format:
	@.venv/bin/ruff check --fix . && .venv/bin/ruff format .
