# Two commands on a fresh machine with Python 3.11 and make: `make run` and `make test`.
# Both install uv (when it is not on PATH), then the locked virtualenv, before doing their job.
UV_VERSION := 0.13.9
UV := $(or $(shell command -v uv 2>/dev/null),$(CURDIR)/.tools/bin/uv)
RUN := $(UV) run --locked

.PHONY: run test lint typecheck pytest sync services stack bench

run: sync
	$(RUN) order-api serve --host 127.0.0.1 --port 8000

test: sync services lint typecheck pytest

# The production topology without containers: DATABASE_URL, REDIS_URL and SECRET_KEY from the
# environment or .env; two API processes from port 8000, a worker, a mail catcher on 1025.
stack: sync
	$(RUN) order-api stack $(STACK_OPTIONS)

# Throughput next to bare FastAPI baselines (docs/benchmarks.md); needs PostgreSQL and Redis.
# BENCH_OPTIONS=--smoke for a quick check; `python -m bench --help` lists the options.
bench: sync
	$(RUN) python -m bench $(BENCH_OPTIONS)

lint: sync
	$(RUN) ruff check .
	$(RUN) ruff format --check .
	$(RUN) lint-imports --no-cache

typecheck: sync
	$(RUN) mypy

pytest: sync
	$(RUN) pytest

sync: $(UV)
	$(UV) sync --locked --compile-bytecode --quiet

services:
	@bash scripts/start-test-services.sh
	@bash scripts/install-test-tools.sh

$(CURDIR)/.tools/bin/uv:
	python3 -m venv $(CURDIR)/.tools
	$(CURDIR)/.tools/bin/python -m pip install --quiet "uv==$(UV_VERSION)"
