# twinstack — every target installs what it needs first (tools/bootstrap.sh is idempotent).
SHELL := /bin/bash
.DEFAULT_GOAL := help
UV := uv
PYTEST_ARGS ?=
UP_ARGS ?=
SOAK_MINUTES ?= 30

.PHONY: help deps up up-ha up-observe observability images image-test test test-unit test-integration test-e2e bench soak lint fmt proto proto-check deploy-check

help: ## List the targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-18s %s\n", $$1, $$2}'

deps: ## Install uv, influxd and the Python environment
	@tools/bootstrap.sh

up: deps ## Run the whole platform locally (nats-server, influxd, 4 services, Ray, example twins)
	$(UV) run twinstack up $(UP_ARGS)

up-ha: deps ## The same, highly available: 3 NATS nodes (R3), two replicas of each service
	$(UV) run twinstack up --ha $(UP_ARGS)

up-observe: deps ## make up, plus a Prometheus on :9090 scraping every service with the alert rules
	$(UV) run twinstack up --observe $(UP_ARGS)

test: deps proto-check ## Run unit, integration and e2e tests against real servers
	$(UV) run pytest $(PYTEST_ARGS)

test-unit: deps ## Unit tests only
	$(UV) run pytest tests/unit $(PYTEST_ARGS)

test-integration: deps ## Integration tests only
	$(UV) run pytest tests/integration $(PYTEST_ARGS)

test-e2e: deps ## End-to-end tests only
	$(UV) run pytest tests/e2e $(PYTEST_ARGS)

bench: deps ## Benchmarks: ratios against baselines measured in the same run
	$(UV) run python -m bench

soak: deps ## The HA platform under mixed load and a fault every 3 minutes (SOAK_MINUTES=30)
	$(UV) run python -m bench.soak --minutes $(SOAK_MINUTES)

lint: deps ## ruff (format check + lint), mypy strict, buf lint
	$(UV) run ruff format --check .
	$(UV) run ruff check .
	$(UV) run mypy
	tools/buf.sh lint

fmt: deps ## Format and autofix
	$(UV) run ruff format .
	$(UV) run ruff check --fix .

proto: deps ## Regenerate libs/api from protos/
	$(UV) run python tools/protogen.py

proto-check: deps ## Fail if libs/api is not what protos/ generate
	$(UV) run python tools/protogen.py --check

observability: deps ## Regenerate the Grafana dashboards and the PrometheusRule (deploy/k8s/base/observability)
	$(UV) run python tools/observability.py

images: deps ## Build the four service images with podman (a Debian base made here if none can be pulled)
	$(UV) run python -m twinstack.devstack.images

image-test: images ## Run each image read-only, non-root, against local NATS and InfluxDB; SIGTERM
	TWINSTACK_IMAGE_TEST=1 $(UV) run pytest tests/images $(PYTEST_ARGS)

deploy-check: deps ## Render every kustomize overlay and validate it against Kubernetes schemas
	$(UV) run pytest tests/unit/deploy/test_manifests.py $(PYTEST_ARGS)
