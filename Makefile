# The README's two commands: `make demo` and `make test`. Everything they need
# is installed from here (virtualenv, Python packages, MariaDB, RabbitMQ, HBase).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
PYTEST_ARGS ?=

.PHONY: help venv demo test lint format typecheck schema-check unit integration \
        services-up services-down services-status bench clean chaos tools image container-test \
        browser

help:
	@echo "make demo   - the whole pipeline on embedded backends (nothing to install)"
	@echo "make test   - install, start MariaDB/RabbitMQ/HBase, lint, type-check, run every test"
	@echo "make services-up|services-down|services-status - the local real services"
	@echo "make image  - build deploy/Dockerfile with podman here; make container-test - a night in containers"
	@echo "make bench  - the benchmarks on the real services (bench/README.md), ~25 minutes"

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	@touch $@

venv: $(STAMP)

BENCH_STAMP := $(VENV)/.bench-stamp
$(BENCH_STAMP): pyproject.toml $(STAMP)
	$(BIN)/python -m pip install -q -e '.[test,bench]'
	@touch $@

demo: venv
	$(BIN)/nightfold demo

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: venv
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

typecheck: venv
	cd "$$(deploy/typecheck-tree)" && $(CURDIR)/$(BIN)/mypy --config-file $(CURDIR)/pyproject.toml -p nightfold

schema-check: venv
	$(BIN)/python -m pytest -q tests/integration/test_migrations.py

services-up: venv
	NIGHTFOLD_PYTHON=$(CURDIR)/$(BIN)/python deploy/local/services up

services-down:
	deploy/local/services down

# Debian's chromium, for the console's browser tests (tests/web)
browser:
	deploy/local/browser

services-status:
	deploy/local/services status

unit: venv
	$(BIN)/python -m pytest tests/unit $(PYTEST_ARGS)

integration: services-up
	set -a && source .nightfold/services.env && set +a && \
	  $(BIN)/python -m pytest tests/integration $(PYTEST_ARGS)

# Prometheus, promtool and the Pushgateway (Debian's), for the observability tests.
tools:
	deploy/local/tools prometheus

# The nightfold image, built from deploy/Dockerfile with podman on a local Debian base
# image (deploy/containers/build; docs/deploy.md, "Built and run here").
IMAGE ?= localhost/nightfold:dev
image:
	NIGHTFOLD_IMAGE=$(IMAGE) deploy/containers/build image

# A night in containers (migration, two workers, the master killed and restarted).
container-test: venv services-up image
	set -a && source .nightfold/services.env && set +a && \
	  NIGHTFOLD_TEST_IMAGE=$(IMAGE) $(BIN)/python -m pytest -ra tests/containers $(PYTEST_ARGS)

# lint and type-check first (cheap), then the services, tools and the browser, then every
# test. The image is built (and tests/containers run) when a container engine works here.
test: lint typecheck services-up tools browser
	set -a && source .nightfold/services.env && set +a && \
	  if deploy/local/tools containers >/dev/null && deploy/local/tools check; then \
	    NIGHTFOLD_IMAGE=$(IMAGE) deploy/containers/build image >/dev/null && \
	    export NIGHTFOLD_TEST_IMAGE=$(IMAGE); \
	  else echo "no working container engine here: tests/containers will be skipped"; fi && \
	  $(BIN)/python -m pytest -ra tests examples/hourly_orders/tests examples/merchant_sketch/tests $(PYTEST_ARGS)
	# last and on their own: the fault tests restart the services (>= 20 randomized trials)
	set -a && source .nightfold/services.env && set +a && \
	  $(BIN)/python -m pytest -ra tests/faults

# The long fault-injection run: >= 200 randomized trials on the real services, which it
# restarts (run nothing else against them meanwhile, or give it services of its own:
# NIGHTFOLD_VAR=<dir> plus the NIGHTFOLD_*_PORT variables of deploy/local/README.md).
# NIGHTFOLD_CHAOS_SEED replays a run.
CHAOS_TRIALS ?= 200
chaos: services-up
	set -a && source $${NIGHTFOLD_VAR:-.nightfold}/services.env && set +a && \
	  $(BIN)/python -m tests.support.chaos --trials $(CHAOS_TRIALS) --report bench/results/chaos.json

# The benchmarks (bench/): results in bench/results/, table in bench/README.md.
bench: $(BENCH_STAMP) services-up
	set -a && source .nightfold/services.env && set +a && \
	  $(BIN)/python -m bench $(BENCH_ARGS)

clean:
	rm -rf .nightfold/typecheck .pytest_cache .mypy_cache .ruff_cache nightfold-demo
