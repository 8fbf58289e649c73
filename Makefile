# Everything people and CI type. `make help` lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
CLUSTER := $(BIN)/python hack/cluster/localcluster.py
TOOLCHAIN := $(PYTHON) hack/containers/toolchain.py
# podman and buildah read the project's settings (runc, ulimits, no registry to pull from), never /etc's.
export CONTAINERS_CONF ?= $(CURDIR)/hack/containers/containers.conf
ifndef CONTAINERS_REGISTRIES_CONF
export CONTAINERS_REGISTRIES_CONF := $(shell $(TOOLCHAIN) registries-conf)
endif

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

# checkov has a virtualenv of its own: it pins packaging<24, which pytest 9 cannot use.
CHECKOV_VENV := $(VENV)/checkov
$(CHECKOV_VENV)/.installed: hack/checkov/requirements.txt
	@test -x $(CHECKOV_VENV)/bin/python || $(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/pip install --quiet -r hack/checkov/requirements.txt
	@touch $@

.PHONY: lint
lint: venv $(CHECKOV_VENV)/.installed ## ruff, hadolint over both Dockerfiles, checkov over k8s/ and every env's rendered release
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/hadolint Dockerfile.app Dockerfile.operator
	$(BIN)/python hack/checkov/gate.py --checkov $(CHECKOV_VENV)/bin/checkov

.PHONY: test
test: venv lint ## Run every test (unit, cluster, pipeline); starts the local control plane itself
	$(BIN)/pytest
	@echo "== The operator suite again, the operator authenticated as its ServiceAccount (k8s/operator RBAC)"
	$(BIN)/pytest tests/cluster/test_operator.py --operator-identity=serviceaccount

.PHONY: test-chaos
test-chaos: venv ## Only the reliability and security suites (crash storm, API server restart, races, bad input, RBAC, PSA)
	$(BIN)/pytest tests/chaos tests/security

.PHONY: test-unit
test-unit: venv ## Only the tests that need no cluster
	$(BIN)/pytest -m 'not cluster'

.PHONY: bench
bench: bench-app bench-rollout bench-operator ## Run every benchmark (loopback only, bounded durations)

.PHONY: bench-operator
bench-operator: venv ## The operator on the local control plane: change latency, 300 releases, writes, idle, RSS -> bench/results.json
	$(BIN)/python bench/operator_bench.py --out bench/results.json --app bench/app.json

.PHONY: bench-rollout
bench-rollout: venv ## Zero downtime on the real node: requests through the Service during a rollout and a rollback -> bench/rollout.json
	$(BIN)/python bench/rollout_bench.py --out bench/rollout.json

.PHONY: bench-app
bench-app: venv ## test-app (hug) vs bare falcon under the same gunicorn, with wrk -> bench/app.json
	@command -v wrk >/dev/null || apt-get install -y wrk || (apt-get update && apt-get install -y wrk)
	$(BIN)/python bench/app_bench.py --out bench/app.json

.PHONY: cluster-up
cluster-up: venv ## Build (once, cached) and start the local control plane and the real node (or say why not); idempotent
	$(CLUSTER) up

.PHONY: cluster-down
cluster-down: venv ## Stop the local control plane and everything it started; put the host back as the real node found it
	$(CLUSTER) down

.PHONY: cluster-env
cluster-env: ## Print `export KUBECONFIG=... TESTAPP_REGISTRY=...` for the local control plane (use with make -s)
	@$(PYTHON) hack/cluster/localcluster.py env

.PHONY: demo
demo: cluster-up ## The main job: cluster, operator, four environments, roll forward/back, auto-rollback
	@hack/demo.sh

.PHONY: run
run: venv ## Run the operator in the foreground against KUBECONFIG (default: the local cluster)
	@export KUBECONFIG=$${KUBECONFIG:-$$($(CLUSTER) kubeconfig)}; \
	kubectl apply --server-side -k crds && \
	exec $(BIN)/python -m testapp_operator --standalone

# --- Delivery: images, rendered manifests, releases. The GitLab jobs call exactly these targets
# (see .gitlab-ci.yml and docs/delivery.md), so a person can run the same step by hand.
ENVS := dev stg ppd prd
KUBECTL ?= kubectl
# docker when a Docker daemon answers, podman otherwise (decided once, and only if a target needs it).
DOCKER ?= $(eval DOCKER := $(shell docker info >/dev/null 2>&1 && echo docker || echo podman))$(DOCKER)
# The images' base. Empty: the Dockerfiles' default, the upstream image pinned by digest (CI,
# Docker). With podman: the local base image `make toolchain` builds from Debian packages.
PYTHON_IMAGE ?= $(if $(filter podman,$(DOCKER)),$(shell $(TOOLCHAIN) base-image-name))
# Image registry path. CI composes it from GCP_REGION and GCP_PROJECT (Artifact Registry); else the
# local cluster's loopback registry once `eval "$$(make -s cluster-env)"` exported it; empty:
# `make image` builds local names and `make deploy` keeps the release's image repository.
REGISTRY ?= $(if $(and $(GCP_REGION),$(GCP_PROJECT)),$(GCP_REGION)-docker.pkg.dev/$(GCP_PROJECT)/test-app,$(TESTAPP_REGISTRY))
APP_IMAGE ?= $(if $(REGISTRY),$(REGISTRY)/)test-app
OPERATOR_IMAGE ?= $(if $(REGISTRY),$(REGISTRY)/)testapp-operator
GIT_SHA ?= $(shell git rev-parse HEAD 2>/dev/null)
APP_VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo 0.0.0-dev)
# Images are tagged with the commit SHA, plus EXTRA_TAGS (CI adds the tag name on tag pipelines).
EXTRA_TAGS ?=
# The release's image repository for `make deploy`/`make manifests` (empty: keep the overlay's).
IMAGE ?= $(if $(REGISTRY),$(APP_IMAGE))
# Optional: CAUSE (change-cause; default from the GitLab CI variables), TIMEOUT (seconds to wait),
# REVISION (rollback target), OUT (file for `make manifests`).
export CAUSE
GITLAB_CI_LOCAL := node_modules/.bin/gitlab-ci-local

# Stop with a clear message when a variable a target needs is missing or malformed.
why_ENV := the environment, one of $(ENVS)
why_TAG := the image tag to deploy, e.g. TAG=$(GIT_SHA)
why_REGISTRY := where images go, e.g. REGISTRY=<region>-docker.pkg.dev/<project>/test-app (or set GCP_REGION and GCP_PROJECT)
why_GIT_SHA := the commit the images are built from (not a git checkout? pass GIT_SHA=...)
guard-%: FORCE
	@if [ -z "$($*)" ]; then echo "make $(MAKECMDGOALS): $* is required: $(why_$*)" >&2; exit 2; fi
guard-ENV: FORCE
	@case " $(ENVS) " in *" $(ENV) "*) ;; \
	  *) echo "make $(MAKECMDGOALS): ENV must be $(why_ENV) (got '$(ENV)')" >&2; exit 2;; esac
guard-TAG: FORCE
	@[[ "$(TAG)" =~ ^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$$ ]] \
	  || { echo "make $(MAKECMDGOALS): TAG is required: $(why_TAG) (got '$(TAG)', not an OCI tag)" >&2; exit 2; }
guard-IMAGE: FORCE
	@[[ -z "$(IMAGE)" || "$(IMAGE)" =~ ^[a-z0-9][a-z0-9._/:-]*$$ && "$(IMAGE)" != *@* ]] \
	  || { echo "make $(MAKECMDGOALS): IMAGE '$(IMAGE)' is not an image repository (no tag, no digest)" >&2; exit 2; }
.PHONY: FORCE
FORCE:

.PHONY: toolchain
toolchain: ## Install podman, buildah, runc, mmdebstrap (Debian) if missing; build the local Python base image (cached)
	@$(TOOLCHAIN) base-image

# podman never pulls here: every image it builds from is local (the Dockerfiles' upstream default
# would otherwise be fetched from outside). Plain HTTP for the loopback registry only.
BUILD_FLAGS = $(if $(PYTHON_IMAGE),--build-arg PYTHON_IMAGE=$(PYTHON_IMAGE)) \
  $(if $(filter podman,$(DOCKER)),--pull=never)
PUSH_FLAGS = $(if $(and $(filter podman,$(DOCKER)),$(filter 127.0.0.1:% localhost:%,$(REGISTRY))),--tls-verify=false)

.PHONY: image
image: guard-GIT_SHA ## Build the app and operator images (their tests run inside the build), tagged with the commit SHA
	@$(if $(filter podman,$(DOCKER)),$(TOOLCHAIN) base-image >/dev/null)
	$(DOCKER) build -f Dockerfile.app $(BUILD_FLAGS) --build-arg GIT_SHA=$(GIT_SHA) --build-arg APP_VERSION=$(APP_VERSION) \
	  $(foreach t,$(GIT_SHA) $(EXTRA_TAGS),-t $(APP_IMAGE):$(t)) .
	$(DOCKER) build -f Dockerfile.operator $(BUILD_FLAGS) --build-arg GIT_SHA=$(GIT_SHA) --build-arg APP_VERSION=$(APP_VERSION) \
	  $(foreach t,$(GIT_SHA) $(EXTRA_TAGS),-t $(OPERATOR_IMAGE):$(t)) .

.PHONY: push
push: guard-REGISTRY image ## Build and push both images to REGISTRY (tags: the commit SHA and EXTRA_TAGS); prints their digests
	@set -euo pipefail; digests=$$(mktemp -d); trap 'rm -rf "$$digests"' EXIT; \
	for image in $(APP_IMAGE) $(OPERATOR_IMAGE); do \
	  for tag in $(GIT_SHA) $(EXTRA_TAGS); do \
	    echo "$(DOCKER) push $$image:$$tag"; \
	    if [ "$(DOCKER)" = podman ]; then \
	      podman push --quiet $(PUSH_FLAGS) --digestfile "$$digests/$${image##*/}" "$$image:$$tag"; \
	    else \
	      $(DOCKER) push "$$image:$$tag" | tee /dev/stderr | sed -n 's/.*\(sha256:[0-9a-f]\{64\}\).*/\1/p' \
	        > "$$digests/$${image##*/}"; fi; done; \
	done; \
	for image in $(APP_IMAGE) $(OPERATOR_IMAGE); do echo "$$image@$$(cat "$$digests/$${image##*/}")"; done

.PHONY: manifests
manifests: guard-ENV guard-TAG guard-IMAGE ## Render k8s/overlays/ENV with spec.tag=TAG (and spec.image=IMAGE) to stdout or OUT=file
	@set -euo pipefail; tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	{ printf '[{"op": "add", "path": "/spec/tag", "value": "%s"}' '$(TAG)'; \
	  if [ -n '$(IMAGE)' ]; then printf ', {"op": "add", "path": "/spec/image", "value": "%s"}' '$(IMAGE)'; fi; \
	  echo ']'; } > "$$tmp/release.json"; \
	printf '%s\n' 'apiVersion: kustomize.config.k8s.io/v1beta1' 'kind: Kustomization' \
	  "resources: [\"$$(realpath --relative-to="$$tmp" k8s/overlays/$(ENV))\"]" \
	  'patches: [{path: release.json, target: {group: testapp.dev, kind: TestAppRelease}}]' \
	  > "$$tmp/kustomization.yaml"; \
	$(KUBECTL) kustomize "$$tmp" $(if $(OUT),> "$(OUT)")

.PHONY: deploy
deploy: guard-ENV guard-TAG guard-IMAGE venv ## Deploy TAG to ENV: new tag, no pin, change-cause; wait for Ready at the new revision
	@set -euo pipefail; \
	found=$$($(KUBECTL) get testappreleases.testapp.dev test-app-$(ENV) --ignore-not-found -o name); \
	if [ -z "$$found" ]; then \
	  echo "test-app-$(ENV) does not exist yet: creating it from k8s/overlays/$(ENV)"; \
	  $(MAKE) --no-print-directory -s manifests OUT= | $(KUBECTL) apply -f -; fi
	$(BIN)/kubectl-testapp deploy $(ENV) --tag $(TAG) $(if $(IMAGE),--image $(IMAGE)) \
	  $(if $(CAUSE),--cause "$$CAUSE") $(if $(TIMEOUT),--timeout $(TIMEOUT))

.PHONY: rollback
rollback: guard-ENV venv ## Pin ENV to its previous Ready revision (or REVISION=n) and wait for Ready
	$(BIN)/kubectl-testapp rollback $(ENV) $(if $(REVISION),--to-revision $(REVISION)) \
	  $(if $(TIMEOUT),--timeout $(TIMEOUT))

.PHONY: history
history: guard-ENV venv ## The revisions of ENV's release, newest first (* marks the deployed one)
	$(BIN)/kubectl-testapp history $(ENV)

.PHONY: install-operator
install-operator: ## Install or update the CRD, RBAC and the operator Deployment (kubectl apply -k k8s/operator)
	$(KUBECTL) apply --server-side -k k8s/operator

$(GITLAB_CI_LOCAL): package.json package-lock.json
	npm ci --no-audit --no-fund
	@touch $@

.PHONY: node-modules
node-modules: $(GITLAB_CI_LOCAL) ## Install the npm tools (gitlab-ci-local) from package-lock.json, and rsync it runs jobs with
	@command -v rsync >/dev/null || { echo "gitlab-ci-local runs jobs with rsync: installing it (Debian)"; \
	  apt-get install -y -qq rsync >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq rsync; }; }
