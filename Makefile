# modelplane — every target runs on the pinned Node.js (hack/node.sh installs it when the
# machine's node is older than 22) and installs what it needs.
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

NODE_DIR := $(shell hack/node.sh)
export PATH := $(NODE_DIR):$(CURDIR)/node_modules/.bin:$(PATH)
# npm reads the user's npmrc; keep its warnings about unrelated keys out of our output.
export npm_config_loglevel ?= error

DEPS_STAMP := node_modules/.modelplane-deps
# Prefix of the long-running commands: they die with make, even when make is killed outright
# (util-linux setpriv; nothing where there is none). What they start dies with them
# (harness/tether.ts).
TETHER := $(shell setpriv --pdeathsig SIGKILL -- true 2>/dev/null && echo setpriv --pdeathsig SIGKILL --)

.PHONY: help
help: ## list the targets
	@grep -hE '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-16s %s\n", $$1, $$2}'

$(DEPS_STAMP): package.json package-lock.json
	@echo "deps: npm install from package-lock.json (node $$(node --version))"
	npm install --no-audit --no-fund
	@touch $@

.PHONY: deps
deps: $(DEPS_STAMP) ## install npm dependencies

.PHONY: cluster-bin
cluster-bin: ## build the control-plane binaries from Go modules (cached outside the clone)
	@hack/cluster-bin.sh

.PHONY: python
python: ## the Python environment of the example Cog models (cog pinned; cached outside the clone)
	@hack/python.sh

.PHONY: image
image: ## build the image (docker or podman; base images made here when no registry answers; IMAGE=... names it)
	@hack/image.sh >/dev/null

.PHONY: engine
engine: ## the container engine the image is built and tested with (podman and runc installed when missing)
	@hack/image.sh --engine >/dev/null

.PHONY: postgres
postgres: ## the PostgreSQL server the store's tests start (Debian package postgresql-15; apt-get install as root)
	@hack/postgres.sh

.PHONY: chromium
chromium: ## the Chromium the HTML report's tests open it in (Debian packages chromium and fonts-dejavu-core; apt-get install as root)
	@hack/chromium.sh

.PHONY: s3
s3: ## the S3-compatible server the tests start (versitygw, built from its Go module; cached outside the clone)
	@hack/s3.sh >/dev/null

.PHONY: lint
lint: $(DEPS_STAMP) ## lint, check formatting, type-check, check the direction of imports
	biome check .
	tsc -p tsconfig.json --noEmit
	node hack/check-imports.ts

.PHONY: format
format: $(DEPS_STAMP) ## rewrite files in the project's format
	biome check --write .

.PHONY: crds
crds: $(DEPS_STAMP) ## generate the CRD YAML in crds/generated/ from the zod schemas in crds/ (and the chart's copy)
	node crds/generate.ts
	node charts/generate.ts

.PHONY: chart
chart: $(DEPS_STAMP) ## generate the chart's values.schema.json (from charts/values.ts) and its copy of the CRDs
	node charts/generate.ts

.PHONY: build
build: $(DEPS_STAMP) ## compile to dist/
	tsc -p tsconfig.build.json

.PHONY: test
test: cluster-bin python postgres s3 engine chromium $(DEPS_STAMP) ## run every test: unit, against a real PostgreSQL and a real S3 server, in headless Chromium, then against a real local control plane (the image test included)
	$(TETHER) vitest run --project unit --project postgres --project s3 --project browser --project cluster

.PHONY: test-unit
test-unit: cluster-bin python $(DEPS_STAMP) ## run the unit tests only
	$(TETHER) vitest run --project unit

.PHONY: test-cluster
test-cluster: cluster-bin python postgres s3 engine chromium $(DEPS_STAMP) ## run the cluster tests only
	$(TETHER) vitest run --project cluster

.PHONY: test-postgres
test-postgres: postgres $(DEPS_STAMP) ## run the tests against a real PostgreSQL server only (*.pg.test.ts)
	$(TETHER) vitest run --project postgres

.PHONY: test-browser
test-browser: chromium $(DEPS_STAMP) ## run the tests that open pages in headless Chromium only (*.browser.test.ts)
	$(TETHER) vitest run --project browser

.PHONY: test-s3
test-s3: s3 $(DEPS_STAMP) ## run the tests against a real S3-compatible server only (*.s3.test.ts)
	$(TETHER) vitest run --project s3

.PHONY: bench
bench: bench-sidecar bench-autoscaler bench-activation bench-gateway bench-store bench-files bench-scale ## every benchmark

.PHONY: bench-files
bench-files: python $(DEPS_STAMP) ## benchmark: gateway and sidecar memory while 50 predictions each return a 5 MB file
	$(TETHER) node bench/files.ts

.PHONY: bench-sidecar
bench-sidecar: python build ## benchmark: the sidecar's added latency and memory over a real Cog server, compiled as the image runs it
	$(TETHER) node bench/sidecar-overhead.ts --cli dist/cli/modelplane.js

.PHONY: bench-autoscaler
bench-autoscaler: cluster-bin $(DEPS_STAMP) ## benchmark: a burst's time to the child replicas in the API server
	$(TETHER) node bench/autoscaler.ts

.PHONY: bench-activation
bench-activation: cluster-bin python $(DEPS_STAMP) ## benchmark: a model pod turning Ready → its first held prediction dispatched
	$(TETHER) node bench/activation.ts

.PHONY: bench-gateway
bench-gateway: cluster-bin python $(DEPS_STAMP) ## benchmark: predictions/s through the gateway and the sidecars against the Cog servers directly
	$(TETHER) node bench/gateway.ts

.PHONY: bench-scale
bench-scale: cluster-bin python $(DEPS_STAMP) ## benchmark: 1,000 Deployments to Ready, idle resyncs, and 5,000 Prediction objects (BENCH_FLAGS='--idle 60' for a quick run)
	$(TETHER) node bench/scale.ts $(BENCH_FLAGS)

.PHONY: bench-store
bench-store: postgres $(DEPS_STAMP) ## benchmark: the prediction store's writes per prediction, memory vs embedded PGlite vs PostgreSQL
	$(TETHER) node bench/store.ts

.PHONY: dev
dev: cluster-bin python $(DEPS_STAMP) ## run it all here: control plane, operator, pod runner, example models; Ctrl-C stops it
	@$(TETHER) node cli/modelplane.ts dev $(DEV_FLAGS)

.PHONY: cluster-up
cluster-up: cluster-bin $(DEPS_STAMP) ## start a local control plane with GPU node pools in the background
	@node harness/cluster/cli.ts up $(POOLS)

.PHONY: cluster-down
cluster-down: ## stop the local control plane
	@node harness/cluster/cli.ts down

.PHONY: pod-runner
pod-runner: python $(DEPS_STAMP) ## run the local pod runner (a T4 and a CPU node that run model pods) in the foreground
	@$(TETHER) node harness/podrunner/cli.ts $(RUNNER)

.PHONY: cluster-status
cluster-status: ## show the local control plane and its node pools
	@node harness/cluster/cli.ts status
