# The two commands first: `make run` and `make test`. `make help` lists every target.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin

.DEFAULT_GOAL := help

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade 'pip>=25.1'

# The project and its runtime dependencies (editable: the checkout is what runs).
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --editable .
	touch $@

# ...plus the test and lint tools.
$(VENV)/.installed-dev: $(VENV)/.installed
	$(BIN)/python -m pip install --quiet --editable . --group dev
	touch $@

.PHONY: help
help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-z-]+:.*## / {printf "  make %-10s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: run
run: $(VENV)/.installed ## run the whole stack in the foreground (Ctrl-C stops it)
	exec $(BIN)/qr-manage run

.PHONY: test
test: $(VENV)/.installed-dev ## run the whole test suite against real PostgreSQL and Traefik
	@left_out=""; \
	command -v prometheus >/dev/null && command -v promtool >/dev/null || \
		left_out="prometheus/promtool: the Prometheus and alert-rule tests (apt-get install prometheus)"; \
	command -v pgbouncer >/dev/null || [ -x /usr/sbin/pgbouncer ] || \
		left_out="$${left_out:+$$left_out; }pgbouncer: the PgBouncer tests (apt-get install pgbouncer)"; \
	command -v pdftoppm >/dev/null || \
		left_out="$${left_out:+$$left_out; }pdftoppm: decoding the PDF label sheets (apt-get install poppler-utils)"; \
	[ -x /usr/lib/postgresql/15/bin/postgres ] || \
		left_out="$${left_out:+$$left_out; }PostgreSQL 15: the bring-your-own-server tests (apt-get install postgresql-15)"; \
	command -v pebble >/dev/null || \
		left_out="$${left_out:+$$left_out; }pebble: the ACME certificate test (apt-get install pebble)"; \
	command -v chromium >/dev/null || \
		left_out="$${left_out:+$$left_out; }chromium: the console's browser tests (apt-get install chromium)"; \
	[ -z "$$left_out" ] || echo "make test: not installed, so skipped: $$left_out"; \
	echo "make test: the compose deployment on a Docker engine is make test-compose's (.ci/run runs both)"
	$(BIN)/python -m pytest $(PYTEST_ARGS)

.PHONY: test-fast
test-fast: $(VENV)/.installed-dev ## the test suite without the few slowest tests (while you work)
	$(BIN)/python -m pytest -m "not slow" $(PYTEST_ARGS)

.PHONY: images
images: $(VENV)/.installed ## build every image compose needs without a registry; writes .env.images (root: debootstrap)
	PYTHON=$(BIN)/python infra/docker/local-images.sh

.PHONY: test-compose
test-compose: $(VENV)/.installed-dev ## the compose deployment on a real Docker engine (make images, up, the design's checks)
	@if ! docker version --format '{{.Server.Version}}' >/dev/null 2>&1; then \
		echo "make test-compose: no Docker engine answers (docker version), so skipped: the compose deployment's tests"; \
		exit 0; \
	fi; \
	$(BIN)/python -m pip install --quiet --editable . --group compose && \
	QR_TEST_COMPOSE=1 $(BIN)/python -m pytest tests/deploy $(PYTEST_ARGS)

.PHONY: bench
bench: $(VENV)/.installed-dev ## measure beside baselines in one run; prints a table, writes bench-results.json
	$(BIN)/python -m tests.bench

.PHONY: profile
profile: $(VENV)/.installed-dev ## where a redirect's CPU goes through the edge: Traefik's pprof and py-spy, beside the bare pair
	$(BIN)/python -m tests.bench profile

.PHONY: bench-analytics-100k
bench-analytics-100k: $(VENV)/.installed-dev ## the statistics section alone, its 10 million scans over 100,000 codes
	BENCH_CODES=100000 $(BIN)/python -m tests.bench analytics

.PHONY: screenshots
screenshots: $(VENV)/.installed-dev ## photograph the console's pages into docs/screenshots/ (needs chromium)
	$(BIN)/python -m tests.console.screenshots docs/screenshots

.PHONY: lint
lint: $(VENV)/.installed-dev ## ruff (lint and format check) and mypy
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

.PHONY: fmt
fmt: $(VENV)/.installed-dev ## format the code with ruff
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

.PHONY: migrate
migrate: $(VENV)/.installed ## upgrade the database schema to head
	$(BIN)/qr-manage migrate

.PHONY: backup
backup: $(VENV)/.installed ## write a checked pg_dump archive into BACKUP_DIR
	$(BIN)/qr-manage backup

.PHONY: status
status: $(VENV)/.installed ## database, schema revision, last backup, counts
	$(BIN)/qr-manage status

.PHONY: clean
clean: ## remove the virtual environment and caches (keeps var/ and backups/)
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
