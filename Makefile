# Enrollment service. `make help` lists the targets.
# Without DATABASE_URL, run/migrate/rollback/test use an embedded PostgreSQL under .data/.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.DEFAULT_GOAL := help
.PHONY: help install run migrate rollback api-key test test-pgbouncer lint fmt typecheck bench clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F ':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP) ## Create .venv and install the service with its dev tools

run: $(STAMP) ## Migrate, then serve on $HOST:$PORT (default 127.0.0.1:8000)
	$(PY) -m service --migrate

migrate: $(STAMP) ## Apply pending migrations to $DATABASE_URL
	$(PY) -m service.migrate apply

rollback: $(STAMP) ## Undo the newest migration on $DATABASE_URL
	$(PY) -m service.migrate rollback

NAME ?= make-api-key
SCOPES ?= read
api-key: $(STAMP) ## Mint an API key (NAME=, SCOPES="read write admin"); the key is the last line
	@$(PY) -m service.keys create --migrate --name "$(NAME)" --scopes $(SCOPES)

lint: $(STAMP) typecheck ## ruff check, ruff format --check, mypy
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: $(STAMP) ## mypy --strict on the service, its tests and the benchmark
	$(VENV)/bin/mypy service bench tests

fmt: $(STAMP) ## Format and autofix with ruff
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

test: lint ## Lint, then the whole suite against a fresh database, with a coverage floor
	$(PY) -m pytest --cov --cov-report=term $(PYTEST_ARGS)

# The modules whose every request goes through the pool: enrollments, keys, the feed (about 1 min).
test-pgbouncer: $(STAMP) ## The enrollment, auth and events tests with the service behind a real PgBouncer
	TEST_VIA_PGBOUNCER=1 $(PY) -m pytest tests/test_enrollments.py tests/test_auth.py tests/test_events.py \
		tests/test_idempotency.py tests/test_conditional.py $(PYTEST_ARGS)

clean: ## Remove the venv, caches and the embedded database
	rm -rf $(VENV) .data .mypy_cache .ruff_cache .pytest_cache *.egg-info

bench: $(STAMP) ## Benchmark the enrollment endpoints against pgbench (bench/README.md; BENCH_ARGS=--help)
	@$(PY) -c "import matplotlib" 2>/dev/null || $(PY) -m pip install -q -r bench/requirements.txt
	$(PY) bench/bench.py $(BENCH_ARGS)
