# Everything people and CI type. `make help` lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
CLUSTER := $(BIN)/python hack/cluster/localcluster.py

.PHONY: help
help: ## List the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  \033[36m%-18s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(BIN)/.installed: pyproject.toml requirements.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements.txt -e '.[dev]'
	@touch $@

.PHONY: venv
venv: $(BIN)/.installed ## Create .venv with the operator, the app and the test tools

.PHONY: lint
lint: venv ## ruff over the Python code
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

.PHONY: test
test: venv lint ## Run every test (unit, cluster, pipeline); starts the local control plane itself
	$(BIN)/pytest

.PHONY: test-unit
test-unit: venv ## Only the tests that need no cluster
	$(BIN)/pytest -m 'not cluster'

.PHONY: cluster-up
cluster-up: venv ## Build (once, cached) and start the local control plane; idempotent
	$(CLUSTER) up

.PHONY: cluster-down
cluster-down: venv ## Stop the local control plane and everything it started
	$(CLUSTER) down

.PHONY: cluster-env
cluster-env: ## Print `export KUBECONFIG=...` for the local control plane (use with make -s)
	@$(PYTHON) hack/cluster/localcluster.py env

.PHONY: demo
demo: cluster-up ## The main job: start everything and show it working
	@KUBECONFIG=$$($(CLUSTER) kubeconfig) kubectl get nodes,pods -A
	@echo
	@echo "The local cluster is running. Use it with:"
	@echo "  $$(make -s cluster-env)"
	@echo "  kubectl get nodes"
	@echo "Stop it with: make cluster-down"
