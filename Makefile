# polystore: make test | make run | make lint | make bench | make load | make chaos | make services
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c

# The toolchain that builds, tests and scans here, in .ci/run and in
# .github/workflows/ci.yml (make lint checks that they name the same one). The
# go command fetches it through the module proxy. go.mod keeps the lowest Go
# version the library needs, so that importers are not forced onto this one.
# `make GO_TOOLCHAIN=local ...` uses the go on PATH instead.
GO_TOOLCHAIN := go1.27.3
export GOTOOLCHAIN := $(GO_TOOLCHAIN)

STATICCHECK_VERSION := v0.8.2
ACTIONLINT_VERSION := v1.7.12
BENCH ?= .
BENCHCOUNT ?= 6
PKG ?= ./...

# Brings up the servers (idempotent) and exports their URLs for the recipe.
SERVICES := services_env=$$(scripts/services); eval "$$services_env"

.PHONY: services services-stop test test-containers lint bench run load chaos

## services: start PostgreSQL, Redis and FerretDB/MongoDB if needed; print their URLs
services:
	@scripts/services

## services-stop: stop the FerretDB and the Redis Cluster nodes that scripts/services started
services-stop:
	@if [ -f .state/ferretdb.pid ]; then kill "$$(cat .state/ferretdb.pid)" 2>/dev/null || true; rm -f .state/ferretdb.pid; fi
	@for n in 7001 7002 7003; do \
		if [ "$$(redis-cli -p $$n config get dir 2>/dev/null | tail -n 1)" = "$(CURDIR)/.state/redis-cluster/$$n" ]; then \
			redis-cli -p $$n shutdown nosave >/dev/null 2>&1 || true; fi; done

## test: vet and run every test, with the race detector, against real servers,
## then the short version of the fault-injection harness (CHAOSTEST).
## The output leaves out passing tests but keeps failures and every skip with
## its reason (a server that lacks a feature), so that no skip goes unseen;
## the whole of it is in .state/test.log.
test:
	@$(SERVICES); export POLYSTORE_REQUIRE_SERVICES=1; \
	go vet ./... && (cd $(BROWSERTEST) && go vet ./...) && $(GOTEST) && $(CHAOSTEST)

# BROWSERTEST is the module of the saga console's tests in headless Chromium:
# a module of its own, so that chromedp stays out of the library's go.mod.
BROWSERTEST := coord/coordhttp/browsertest

# GOTEST runs every test of the module, then the browser tests, with the race
# detector, and prints what `make test` documents: failures and skips with
# their reasons, not the passing tests.
GOTEST := { go test -race -count=1 -v ./... && (cd $(BROWSERTEST) && go test -race -count=1 -v ./...); } 2>&1 | \
	tee .state/test.log | grep -Ev '^(=== (RUN|PAUSE|CONT|NAME) |[[:space:]]*--- PASS: |PASS$$)'

# CHAOSTEST runs the tests of tools/chaos and tools/loadgen, among them
# TestChaosShort, the short version of the harness (a few faults under load,
# about a minute, on private stores it starts itself; its table is in the
# output): it fails when a promise is broken or a process does not come up.
CHAOSTEST := (cd tools && go test -count=1 -v ./chaos ./loadgen/...) 2>&1 | \
	tee -a .state/test.log | grep -Ev '^(=== (RUN|PAUSE|CONT|NAME) |[[:space:]]*--- PASS: |PASS$$)'

## test-containers: every test with no POSTGRES_URL, REDIS_URL or MONGODB_URL,
## so that internal/servicetest starts its own containers with
## testcontainers-go (needs a Docker engine; the second job of
## .github/workflows/ci.yml). The Redis Cluster has no container:
## REDIS_CLUSTER_URL must point at one, or its tests fail.
test-containers:
	@mkdir -p .state; unset POSTGRES_URL REDIS_URL MONGODB_URL; export POLYSTORE_REQUIRE_SERVICES=1; \
	$(GOTEST)

## lint: gofmt, go vet, staticcheck, actionlint on the GitHub workflow and
## govulncheck against a database built from golang.org/x/vulndb (all pinned,
## through go run; scripts/vulncheck)
lint:
	go version
	@unformatted=$$(gofmt -l $$(git ls-files '*.go')); \
	if [ -n "$$unformatted" ]; then echo "gofmt would change:"; echo "$$unformatted"; exit 1; fi
	go vet ./...
	cd tools && go vet ./...
	cd $(BROWSERTEST) && go vet ./...
	go run honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION) ./...
	cd tools && go run honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION) ./...
	cd $(BROWSERTEST) && go run honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION) ./...
	go run github.com/rhysd/actionlint/cmd/actionlint@$(ACTIONLINT_VERSION)
	@for f in .ci/run .github/workflows/ci.yml; do \
		grep -q 'GOTOOLCHAIN[=:] *$(GO_TOOLCHAIN)$$' "$$f" || { echo "lint: $$f does not set GOTOOLCHAIN to $(GO_TOOLCHAIN) as the Makefile does"; exit 1; }; done
	scripts/vulncheck

## bench: benchmarks against the raw drivers (BENCH=regexp PKG=./pgrepo BENCHCOUNT=n)
bench:
	@$(SERVICES); export POLYSTORE_REQUIRE_SERVICES=1; \
	go test -run '^$$' -bench '$(BENCH)' -benchmem -count $(BENCHCOUNT) $(PKG)

## run: start the servers, then the example server
run:
	@$(SERVICES); \
	if [ -d examples/server ]; then exec go run ./examples/server; \
	else echo "make run: the example server (examples/server) has not landed yet; the services above are up."; fi

## load: bounded load on the example server from this machine (scripts/load)
load:
	@scripts/load

## chaos: the fault-injection harness (tools/chaos), every scenario: the example
## server under load while its stores fail and come back, on private stores it
## starts and stops itself; prints the table of examples/server/README.md,
## "Resilience under faults", and fails on any invariant violation
chaos:
	cd tools && go run ./chaos
