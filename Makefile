# bucketrun — developer entry points. Every target installs what it needs first (idempotently).
# `make demo` runs the local demo; `make test` runs the test suite. See README.md.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
DEMO_STAMP := $(VENV)/.installed-demo
STACK_DIR ?= .bucketrun-stack

.PHONY: help setup system-deps servers peers bench-peers test test-fast lint format demo stack stack-up stack-down bench soak mutant clean

help: ## Show the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "} {printf "  make %-12s %s\n", $$1, $$2}'

system-deps: ## Install RabbitMQ and Prometheus from Debian's packages if missing (needs root)
	@bash .ci/install-system-deps

$(STAMP): pyproject.toml
	@echo "==> creating $(VENV) and installing bucketrun with its dev and bench extras"
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip install --quiet --upgrade pip
	@$(BIN)/python -m pip install --quiet --progress-bar off -e '.[dev,bench]'
	@touch $(STAMP) $(DEMO_STAMP)

# The demo needs bucketrun and its moto fallback only: a fresh clone shows jobs in about a minute.
$(DEMO_STAMP): pyproject.toml
	@echo "==> creating $(VENV) and installing bucketrun with its demo extra (make setup adds the rest)"
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip install --quiet --progress-bar off -e '.[demo]'
	@touch $(DEMO_STAMP)

setup: system-deps $(STAMP) ## Install everything the demo and the tests need

servers: ## Build MinIO, mc, etcd, the Kubernetes control plane and oscar-cli from source (versions in .ci/servers.env) into ~/.cache/bucketrun/servers (or BUCKETRUN_SERVERS_DIR), once per version
	@bash .ci/build-servers

peers: ## Build the peers of issue #22 from source (KEDA's operator, OSCAR; versions in .ci/peers.env) into ~/.cache/bucketrun/servers (or BUCKETRUN_SERVERS_DIR), once per version; not needed by `make test`
	@bash .ci/build-peers

bench-peers: setup servers peers ## bucketrun beside KEDA ScaledJob and OSCAR on the local stack (issue #22): writes bench/results/peers.md (PEERS_ARGS=... for bench/peers/run.py)
	$(BIN)/python bench/peers/run.py $(PEERS_ARGS)

test: setup servers ## Run the whole test suite against real servers (prints the backends it chose)
	$(BIN)/pytest $(PYTEST_ARGS)

test-fast: $(STAMP) ## Only the pure unit tests (no servers)
	$(BIN)/pytest tests/unit $(PYTEST_ARGS)

lint: $(STAMP) ## Ruff (lint + format check), mypy (strict) and the import layers (lint-imports)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports --no-cache

format: $(STAMP) ## Apply ruff's formatting and safe fixes
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

demo: $(DEMO_STAMP) ## Run the local demo: samples through RabbitMQ, MinIO and Kubernetes if built (else moto, local executor), dispatcher, watcher
	@bash .ci/install-system-deps rabbitmq-server
	$(BIN)/bucketrun demo $(DEMO_ARGS)

# The local stack (README.md, "The local stack"): its servers' data, logs and stack.env in $(STACK_DIR).
stack: $(DEMO_STAMP) servers ## Run the local stack in the foreground: RabbitMQ, MinIO, Kubernetes built from source, a node agent (Ctrl-C stops it)
	@bash .ci/install-system-deps rabbitmq-server
	$(BIN)/bucketrun stack run --dir $(STACK_DIR)

stack-up: $(DEMO_STAMP) servers ## Start the local stack in the background; returns once ready, with $(STACK_DIR)/stack.env to source
	@bash .ci/install-system-deps rabbitmq-server
	$(BIN)/bucketrun stack up --dir $(STACK_DIR)

stack-down: ## Stop everything the local stack in $(STACK_DIR) started
	$(BIN)/bucketrun stack down --dir $(STACK_DIR)

bench: setup ## Performance report (issue #21): on the real stack when `make servers` built it, else the emulator; writes bench/results/ (BENCH_ARGS=--quick for a smoke run)
	$(BIN)/python bench/run_all.py $(BENCH_ARGS)

soak: setup ## Full soak with faults (10,000 events, 5 services; ~15 min on the real control plane); report in soak-report.json
	BUCKETRUN_SOAK_EVENTS=10000 BUCKETRUN_SOAK_REPORT=soak-report.json $(BIN)/pytest tests/reliability/test_soak.py -k soak_with_faults -s $(PYTEST_ARGS)

mutant: setup ## Prove the soak catches a broken build: it must fail on the ack-before-create mutant
	tests/reliability/run_mutant.sh

clean: ## Remove the virtualenv and caches
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
