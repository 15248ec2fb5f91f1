# The two commands: `make run` and `make test`. Everything installs into .venv from pinned files.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
REQUIREMENTS := inventory-service/requirements.txt order-service/requirements.txt requirements-dev.txt

.PHONY: install run test test-fast lint cluster bench clean

$(STAMP): $(REQUIREMENTS) service-common/pyproject.toml inventory-service/pyproject.toml order-service/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet $(addprefix -r ,$(REQUIREMENTS))
	$(BIN)/python -m pip install --quiet --no-deps -e service-common -e inventory-service -e order-service
	touch $@

install: $(STAMP)

## Both services on SQLite under ./data/, in the foreground; Ctrl-C stops both.
run: install
	$(BIN)/python local/run.py

## The whole test suite (PostgreSQL tests need TEST_DATABASE_URL; system programs are skipped if absent).
test: install
	$(BIN)/python -m pytest

## The fast layer only (tests/fast: both apps in-process, no servers) on SQLite: the edit-run loop, in seconds.
## (make test runs it on PostgreSQL too.)
test-fast: install
	$(BIN)/python -m pytest tests/fast -q -k sqlite

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	$(BIN)/mypy -p service_common -p order_service -p inventory_service -m local.processes

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache

## N (REPLICAS, default 3) replicas of each service on PostgreSQL behind HAProxy on 30000 / 5001, and a
## NATS JetStream broker of its own for the order events.
cluster: install
	command -v haproxy || (apt-get update -qq && apt-get install -y -qq haproxy)
	command -v nats-server || (apt-get update -qq && apt-get install -y -qq nats-server)
	$(BIN)/python -m local.cluster

## Benchmarks against their ceilings (bench/, docs/performance.md): BENCH_ARGS=--quick | --full | --profile.
## PostgreSQL from BENCH_PG_URL (default postgresql://postgres@127.0.0.1:5432); results in bench/results/.
bench: install
	command -v wrk || (apt-get update -qq && apt-get install -y -qq wrk)
	command -v pgbench || (apt-get update -qq && apt-get install -y -qq postgresql-client)
	$(BIN)/python -m bench $(BENCH_ARGS)
