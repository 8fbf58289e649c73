# Everything people and CI type. `make help` lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
CLUSTER := $(BIN)/python hack/cluster/localcluster.py
TOOLCHAIN := $(PYTHON) hack/containers/toolchain.py
HOSTTOOLS := $(PYTHON) hack/hosttools.py
# podman and buildah read the project's settings (runc, ulimits, no registry to pull from), never /etc's.
export CONTAINERS_CONF ?= $(CURDIR)/hack/containers/containers.conf
ifndef CONTAINERS_REGISTRIES_CONF
export CONTAINERS_REGISTRIES_CONF := $(shell $(TOOLCHAIN) registries-conf)
endif

.PHONY: help
help: ## List the targets and the variables they take (colour only on a terminal)
	@if [ -t 1 ] && [ -z "$${NO_COLOR:-}" ]; then on=$$'\033[36m' off=$$'\033[0m'; else on= off=; fi; \
	awk -v on="$$on" -v off="$$off" ' \
	  /^[a-zA-Z_-]+:.*## / { split($$0, a, ":.*## "); targets = targets sprintf("  %s%-18s%s %s\n", on, a[1], off, a[2]) } \
	  /^## [A-Z_]+ / { name = $$2; sub(/^## [A-Z_]+ +/, ""); variables = variables sprintf("  %s%-18s%s %s\n", on, name, off, $$0) } \
	  END { printf "Targets:\n%s\nVariables (make <target> NAME=value):\n%s", targets, variables }' $(MAKEFILE_LIST)

# The host programs a target runs (hack/host-tools.toml), installed first: `make demo` and `make test`
# work on a machine that has only its image's packages, or say in one line what is missing.
tools-%: FORCE
	@$(HOSTTOOLS) install $*

.PHONY: host-tools
host-tools: ## Install every host program the targets run (hack/host-tools.toml) that is missing
	@$(HOSTTOOLS) install toolchain cluster-up demo test bench

$(BIN)/.installed: pyproject.toml requirements.txt
	@command -v $(PYTHON) >/dev/null || { echo "make: $(PYTHON) is missing: install CPython 3.11 (pyenv install 3.11, or apt-get install -y python3.11-venv)" >&2; exit 1; }
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
test: tools-test venv $(CHECKOV_VENV)/.installed ## Run the linters and every test (unit, cluster, pipeline, chaos), side by side; starts its control planes itself
	@hack/test.sh

.PHONY: test-fresh
test-fresh: ## make demo on a copy of this machine with only its image's packages and no caches (root; .fresh/)
	@hack/fresh-machine.sh

.PHONY: test-chaos
test-chaos: venv ## Only the reliability and security suites (crash storm, API server restart, races, bad input, RBAC, PSA)
	$(BIN)/pytest tests/chaos tests/security

.PHONY: test-unit
test-unit: venv ## Only the tests that need no cluster and build no image
	$(BIN)/pytest -m 'not cluster and not images'

.PHONY: bench
bench: bench-app bench-rollout bench-operator bench-images ## Run every benchmark (loopback only, bounded durations)

.PHONY: bench-operator
bench-operator: venv ## The operator on the local control plane: change latency, 300 releases, writes, idle, RSS -> bench/results.json and the README's table
	$(BIN)/python bench/operator_bench.py --out bench/results.json --app bench/app.json
	$(BIN)/python bench/readme_table.py

.PHONY: bench-images
bench-images: venv ## Both images with podman: cold build, rebuild after a code change, sizes, app start to /readyz -> bench/images.json
	$(BIN)/python bench/images_bench.py --out bench/images.json

.PHONY: bench-rollout
bench-rollout: venv ## Zero downtime on the real node: requests through the Service during a rollout, a rollback, a promoted and an aborted canary -> bench/rollout.json
	$(BIN)/python bench/rollout_bench.py --out bench/rollout.json

.PHONY: bench-app
bench-app: tools-bench venv ## test-app (hug) vs bare falcon under the same gunicorn, with wrk -> bench/app.json
	$(BIN)/python bench/app_bench.py --out bench/app.json

.PHONY: cluster-up
cluster-up: tools-cluster-up venv ## Build (once, cached) and start the local control plane and the real node (or say why not); idempotent
	$(CLUSTER) up

.PHONY: cluster-down
cluster-down: venv ## Stop the local control plane and everything it started; put the host back as the real node found it
	$(CLUSTER) down

.PHONY: cluster-env
cluster-env: ## Print `export KUBECONFIG=... TESTAPP_REGISTRY=...` for the local control plane (use with make -s)
	@$(PYTHON) hack/cluster/localcluster.py env

.PHONY: demo
demo: tools-demo cluster-up ## The main job: cluster, operator, four environments, roll forward/back, auto-rollback
	@hack/demo.sh

.PHONY: run
run: venv ## Run the operator in the foreground against KUBECONFIG (default: the local cluster)
	@export KUBECONFIG=$${KUBECONFIG:-$$($(CLUSTER) kubeconfig)}; \
	$(BIN)/python -m testapp_operator.delivery.install crd && \
	exec $(BIN)/python -m testapp_operator --standalone

# --- Delivery: images, rendered manifests, releases (docs/delivery.md). A person runs the same
# steps by hand; the GitLab jobs run the same tools inside the images the pipeline built.
#
# The variables people set; `make help` lists these `## NAME` lines.
## ENV      the environment a target acts on: dev, stg, ppd or prd
## TAG      the image tag to deploy or render (an OCI tag; CI uses the commit SHA)
## DIGEST   `make deploy`: the tag's image digest, sha256:<64 hex>; the Pods then run exactly it
## IMAGE    the app image repository, no tag or digest (default: REGISTRY/test-app)
## REGISTRY where images go, e.g. <region>-docker.pkg.dev/<project>/test-app or 127.0.0.1:5000
## DOCKER   `make image`/`push`: docker or podman (default: docker if its daemon answers)
## CACHE_REGISTRY `make push` with Docker: BuildKit's registry cache (default: REGISTRY-cache)
## PYTHON_IMAGE the images' base (default: the pinned upstream one; podman: the local one)
## REVISION `make rollback`: the revision to pin (default: the previous Ready one)
## TIMEOUT  seconds `deploy` and `rollback` wait for Ready (default 300)
## CAUSE    the change cause a deploy records (default: from the GitLab CI variables, or $USER)
## OUT      `make manifests`: write to this file instead of stdout
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
# Images are tagged with the commit SHA, plus EXTRA_TAGS.
EXTRA_TAGS ?=
# `make push` with Docker: BuildKit's layer cache beside REGISTRY (test-app -> test-app-cache), and
# BuildKit pinned where CI pins it.
CACHE_REGISTRY ?= $(REGISTRY)-cache
BUILDKIT_IMAGE ?= $(shell sed -n 's/^  BUILDKIT_IMAGE: //p' .gitlab-ci.yml)
IMAGE ?= $(if $(REGISTRY),$(APP_IMAGE))
# The variables people set reach the recipes as make gives them (command line or environment),
# never exported empty: an empty TIMEOUT is not an unset one to what a recipe runs (gunicorn).
# Defaults the Makefile computes go only to the recipes (and guards) that read them: exported to
# all, `make test` would hand them to every make its tests run, overriding those makes' defaults.
manifests deploy: export IMAGE := $(IMAGE)
manifests deploy: export KUBECTL := $(KUBECTL)
install-operator: export OPERATOR_IMAGE := $(OPERATOR_IMAGE)
GITLAB_CI_LOCAL := node_modules/.bin/gitlab-ci-local

# Checks that stop a target before it does anything, naming the variable. The patterns are the
# CRD's and release.py's (tests/pipeline/test_makefile.py holds them equal).
TAG_PATTERN := ^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$$
IMAGE_PATTERN := ^[a-z0-9][a-z0-9._/:-]*$$
IMAGE_TAG_PATTERN := :[^/]*$$
IMAGE_MAX_LENGTH := 255
DIGEST_PATTERN := ^sha256:[0-9a-f]{64}$$
why_TAG := the image tag to deploy, e.g. TAG=$(GIT_SHA)
why_IMAGE := the app image repository, e.g. IMAGE=<region>-docker.pkg.dev/<project>/test-app/test-app (or set REGISTRY)
why_REGISTRY := where images go, e.g. REGISTRY=<region>-docker.pkg.dev/<project>/test-app (or set GCP_REGION and GCP_PROJECT)
why_OPERATOR_DIGEST := the operator image's digest, e.g. OPERATOR_DIGEST=sha256:<64 hex> (make push prints it)
why_GIT_SHA := the commit the images are built from (not a git checkout? pass GIT_SHA=...)
guard-%: FORCE
	@if [ -z "$($*)" ]; then echo "make $(MAKECMDGOALS): $* is required: $(why_$*)" >&2; exit 2; fi
guard-ENV: FORCE
	@case "$$ENV" in $(subst $() ,|,$(ENVS))) ;; \
	  *) echo "make $(MAKECMDGOALS): ENV must be the environment, one of $(ENVS) (got '$$ENV')" >&2; exit 2;; esac
guard-TAG: guard-TAG-set FORCE
	@re='$(TAG_PATTERN)'; [[ "$$TAG" =~ $$re ]] || { echo "make $(MAKECMDGOALS): TAG '$$TAG' is not a valid tag:" \
	  "letters, digits, '_', '.', '-', at most 128, not starting with '.' or '-'" >&2; exit 2; }
guard-TAG-set: FORCE
	@if [ -z "$$TAG" ]; then echo "make $(MAKECMDGOALS): TAG is required: $(why_TAG)" >&2; exit 2; fi
guard-IMAGE: guard-IMAGE-set check-IMAGE
guard-IMAGE-set: FORCE
	@if [ -z "$$IMAGE" ]; then echo "make $(MAKECMDGOALS): IMAGE is required: $(why_IMAGE)" >&2; exit 2; fi
# An image repository (when set: `make deploy` keeps the release's own without IMAGE).
check_image = re='$(IMAGE_PATTERN)' tagged='$(IMAGE_TAG_PATTERN)' v="$$$(1)"; \
	[[ -z "$$v" || ( "$$v" =~ $$re && ! "$$v" =~ $$tagged && "$$v" != *@* && $${\#v} -le $(IMAGE_MAX_LENGTH) ) ]] \
	  || { echo "make $(MAKECMDGOALS): $(1) '$$v' is not an image repository: lower-case, no tag" \
	  "or digest (put the tag in TAG; a registry port as in 127.0.0.1:5000/test-app is fine)" >&2; exit 2; }
check-IMAGE: FORCE
	@$(call check_image,IMAGE)
guard-OPERATOR_IMAGE: FORCE
	@$(call check_image,OPERATOR_IMAGE)
guard-OPERATOR_DIGEST: FORCE
	@re='$(DIGEST_PATTERN)'; [[ "$$OPERATOR_DIGEST" =~ $$re ]] || { echo "make $(MAKECMDGOALS):" \
	  "OPERATOR_DIGEST '$$OPERATOR_DIGEST' is not a digest: $(why_OPERATOR_DIGEST)" >&2; exit 2; }
# DIGEST when set (a deploy without one runs the tag as the registry resolves it).
check-DIGEST: FORCE
	@re='$(DIGEST_PATTERN)'; [[ -z "$$DIGEST" || "$$DIGEST" =~ $$re ]] || { echo "make $(MAKECMDGOALS):" \
	  "DIGEST '$$DIGEST' is not a digest: sha256:<64 lower-case hex>" >&2; exit 2; }
.PHONY: FORCE
FORCE:

.PHONY: toolchain
toolchain: tools-toolchain ## Install podman, buildah, runc, mmdebstrap (Debian) if missing; build the local Python base image (cached)
	@$(TOOLCHAIN) base-image

# podman never pulls here: every image it builds from is local (the Dockerfiles' upstream default
# would otherwise be fetched from outside). Plain HTTP for the loopback registry only.
BUILD_FLAGS = $(if $(PYTHON_IMAGE),--build-arg PYTHON_IMAGE=$(PYTHON_IMAGE)) \
  $(if $(filter podman,$(DOCKER)),--pull=never)
PUSH_FLAGS = $(if $(and $(filter podman,$(DOCKER)),$(filter 127.0.0.1:% localhost:%,$(REGISTRY))),--tls-verify=false)

.PHONY: image
image: guard-GIT_SHA ## Build the app and operator images (their tests run inside the build), tagged with the commit SHA
	@$(if $(filter podman,$(DOCKER)),$(TOOLCHAIN) base-image >/dev/null)
	$(call build_image,app,$(APP_IMAGE))
	$(call build_image,operator,$(OPERATOR_IMAGE))
# $(call build_image,app|operator,repository)
build_image = $(DOCKER) build -f Dockerfile.$(1) $(BUILD_FLAGS) --build-arg GIT_SHA=$(GIT_SHA) \
  --build-arg APP_VERSION=$(APP_VERSION) $(foreach t,$(GIT_SHA) $(EXTRA_TAGS),-t $(2):$(t)) .

.PHONY: push
# With Docker, `make push` is what CI's build jobs run, hack/ci/build.sh (BuildKit pinned by
# .gitlab-ci.yml, the registry cache CACHE_REGISTRY, the SHA tag, an already pushed commit
# reused), as the account `gcloud auth configure-docker` logged in. With podman: what `make image`
# builds, then each tag pushed (the local cluster's loopback registry).
push: guard-REGISTRY guard-GIT_SHA ## Build and push both images to REGISTRY (Docker: as CI does; podman: tags SHA and EXTRA_TAGS); prints their digests
	@set -euo pipefail; \
	if [ "$(DOCKER)" = docker ]; then \
	  for kind in app operator; do \
	    PUSH=true REGISTRY_LOGIN=skip REGISTRY="$(REGISTRY)" CACHE_REGISTRY="$(CACHE_REGISTRY)" \
	      BUILDKIT_IMAGE="$(BUILDKIT_IMAGE)" CI_COMMIT_SHA="$(GIT_SHA)" APP_VERSION="$(APP_VERSION)" hack/ci/build.sh "$$kind"; \
	  done; rm -f build.env; \
	  for image in $(APP_IMAGE) $(OPERATOR_IMAGE); do \
	    echo "$$image@$$(docker buildx imagetools inspect "$$image:$(GIT_SHA)" --format '{{.Manifest.Digest}}')"; done; \
	  exit 0; fi; \
	$(TOOLCHAIN) base-image >/dev/null; \
	$(call build_image,app,$(APP_IMAGE)); $(call build_image,operator,$(OPERATOR_IMAGE)); \
	digests=$$(mktemp -d); trap 'rm -rf "$$digests"' EXIT; \
	for image in $(APP_IMAGE) $(OPERATOR_IMAGE); do \
	  for tag in $(GIT_SHA) $(EXTRA_TAGS); do \
	    echo "$(DOCKER) push $$image:$$tag"; \
	    podman push --quiet $(PUSH_FLAGS) --digestfile "$$digests/$${image##*/}" "$$image:$$tag"; done; \
	done; \
	for image in $(APP_IMAGE) $(OPERATOR_IMAGE); do echo "$$image@$$(cat "$$digests/$${image##*/}")"; done

.PHONY: manifests
manifests: guard-ENV guard-TAG guard-IMAGE ## Render k8s/overlays/ENV with spec.image=IMAGE and spec.tag=TAG, to stdout or OUT=file
	@hack/manifests.sh $(if $(OUT),> "$$OUT")

# A release that does not exist yet is created in two applies, so that re-applying an overlay
# (by hand, Argo CD or Flux) never resets what CI deployed: kubectl-testapp owns spec.image and
# spec.tag from the start, the overlay's manager (kubectl) owns only what the overlay sets.
.PHONY: deploy
deploy: guard-ENV guard-TAG check-DIGEST check-IMAGE venv ## Deploy TAG (DIGEST) to ENV: new tag, no pin, change-cause; wait for Ready at the new revision (TAG's Failed revision: retried)
	@set -euo pipefail; \
	if [ -z "$$($(KUBECTL) get testappreleases.testapp.dev test-app-$$ENV --ignore-not-found -o name)" ]; then \
	  echo "test-app-$$ENV does not exist yet: creating it with k8s/overlays/$$ENV"; \
	  hack/manifests.sh --deployed-fields | $(KUBECTL) apply --server-side --field-manager=kubectl-testapp -f -; \
	  $(KUBECTL) apply --server-side -k "k8s/overlays/$$ENV"; fi
	$(BIN)/kubectl-testapp deploy "$$ENV" --tag "$$TAG" $(if $(DIGEST),--digest "$$DIGEST") $(if $(IMAGE),--image "$$IMAGE") --retry-failed \
	  $(if $(CAUSE),--cause "$$CAUSE") $(if $(TIMEOUT),--timeout $(TIMEOUT))

.PHONY: rollback
rollback: guard-ENV venv ## Pin ENV to its previous Ready revision (or REVISION=n) and wait for Ready
	$(BIN)/kubectl-testapp rollback "$$ENV" $(if $(REVISION),--to-revision $(REVISION)) \
	  $(if $(TIMEOUT),--timeout $(TIMEOUT))

.PHONY: history
history: guard-ENV venv ## The revisions of ENV's release, newest first (* marks the deployed one)
	$(BIN)/kubectl-testapp history "$$ENV"

.PHONY: install-crd
install-crd: venv ## Install or upgrade the TestAppRelease CRD (server-side, taking over a client-side apply's fields); wait Established
	$(BIN)/python -m testapp_operator.delivery.install crd

.PHONY: install-operator
install-operator: guard-OPERATOR_IMAGE guard-OPERATOR_DIGEST venv ## Install or upgrade the CRDs, RBAC and operator (OPERATOR_IMAGE@OPERATOR_DIGEST); wait for its rollout
	$(BIN)/python -m testapp_operator.delivery.install operator --image "$$OPERATOR_IMAGE" --digest "$$OPERATOR_DIGEST" \
	  $(if $(TIMEOUT),--timeout $(TIMEOUT))
	$(KUBECTL) -n testapp-system rollout status deployment/testapp-operator --timeout=$(or $(TIMEOUT),300)s

$(GITLAB_CI_LOCAL): package.json package-lock.json
	npm ci --no-audit --no-fund
	@touch $@

.PHONY: node-modules
node-modules: tools-test $(GITLAB_CI_LOCAL) ## Install the npm tools (gitlab-ci-local) from package-lock.json, and rsync it runs jobs with
