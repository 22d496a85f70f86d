# Keyhall — the two commands a newcomer needs are `make run` and `make test`.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
HOST   ?= 127.0.0.1
PORT   ?= 8000
DEV    ?= 1
POSTGRES_TEST_URL ?= postgresql://postgres@127.0.0.1:5432/test
TEST_WORKERS ?= 2

.PHONY: run install install-test peers system-deps test test-sqlite test-postgres test-containers container-deps \
        container-images lint bench bench-login clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml $(VENV)/.installed
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

install: $(VENV)/.installed

install-test: $(VENV)/.installed-test

## Serve Keyhall on http://$(HOST):$(PORT) with SQLite under ./data (migrates first); `make run PORT=8001`
## picks another port (the public URL follows it unless KEYHALL_PUBLIC_URL is set). Development mode
## (KEYHALL_DEV=1; `make run DEV=0` turns it off): a test IdP, an example product and a seeded demo organization.
run: install
	KEYHALL_DEV=$(DEV) $(BIN)/keyhall serve --host $(HOST) --port $(PORT)

## System packages the real peers need (Node.js, Chromium, ...); installs only what is missing.
system-deps:
	bash scripts/install-system-deps.sh

## npm packages of the real peers the tests start (lock files pinned).
peers: system-deps
	cd tests/peers/oidc_provider && npm ci --no-audit --no-fund --loglevel=error
	cd tests/peers/saml_idp && npm ci --no-audit --no-fund --loglevel=error

## The whole suite on SQLite, then lint and type checks. The tests run on $(TEST_WORKERS) pytest-xdist workers,
## each with its own peers and databases (`make test TEST_WORKERS=0` runs them in one process).
test: install-test peers
	$(BIN)/pytest -q -n $(TEST_WORKERS)
	$(MAKE) --no-print-directory lint

## The whole suite again on PostgreSQL (a server on 127.0.0.1:5432, trust auth, database `test`),
## but for the modules marked own_database: their servers use databases of their own whichever leg
## runs (PostgreSQL ones included), so `make test` has run them already.
test-postgres: install-test peers
	KEYHALL_TEST_DATABASE_URL=$(POSTGRES_TEST_URL) $(BIN)/pytest -q -n $(TEST_WORKERS) -m "not own_database"

# Podman as the container tests run it: the runc runtime and no default ulimits (tests/containers/containers.conf).
PODMAN_ENV   := CONTAINERS_CONF=$(CURDIR)/tests/containers/containers.conf
KEYHALL_IMAGE ?= localhost/keyhall:test
# pip inside a build verifies the registry with this machine's CA bundle, handed in at build time
# (never part of the Dockerfile); apt and pip reach the registries through the host's network.
HOST_CA      ?= /etc/ssl/certs/ca-certificates.crt
PODMAN_BUILD := $(PODMAN_ENV) podman build --format docker --network=host \
                -v $(HOST_CA):/run/host-ca.crt:ro -v $(CURDIR)/tests/containers/pip.conf:/etc/pip.conf:ro

## Podman, runc, podman-compose and debootstrap (Debian packages); installs only what is missing.
container-deps:
	bash scripts/install-container-deps.sh

## The base image (debootstrapped when missing), Keyhall's image and the compose stand-ins.
container-images: container-deps
	$(PODMAN_ENV) bash scripts/build-container-base.sh
	$(PODMAN_BUILD) -q -t $(KEYHALL_IMAGE) .
	$(PODMAN_BUILD) -q -t localhost/keyhall-standin-postgres deploy/standins/postgres
	$(PODMAN_BUILD) -q -t localhost/keyhall-standin-redis deploy/standins/redis
	$(PODMAN_BUILD) -q -t localhost/keyhall-standin-nginx deploy/standins/nginx

## The production image and compose stack, built and run with podman (slow; not part of `make test`):
## a sign-in through the image against the real OIDC peer, its health check, and the compose stack.
test-containers: install-test peers container-images
	$(PODMAN_ENV) KEYHALL_TEST_IMAGE=$(KEYHALL_IMAGE) $(BIN)/pytest -q tests/containers

lint: install-test
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy src

BENCH_ARGS ?=

## Benchmark suite: Keyhall CPU per operation beside a bare FastAPI route, one table with the targets
## of issue 11 (a few minutes; all on 127.0.0.1; BENCH_ARGS="--hrd-domains 1000000 --workers 2", see bench/README.md).
bench: install-test peers
	$(BIN)/python -m bench.suite $(BENCH_ARGS)

## Login benchmark alone: per-step latency of complete OIDC sign-ins (BENCH_ARGS="--logins 200 --concurrency 4").
bench-login: install-test peers
	$(BIN)/python -m bench.login $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
