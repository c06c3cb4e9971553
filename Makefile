# Targets everybody uses. `make` alone lists them.
GO        ?= go
RACE      ?= -race
TIMEOUT   ?= 20m
PKGS      ?= ./...
BENCHTIME ?= 1x
COUNT     ?= 6
OLD       ?= HEAD~1
NEW       ?= HEAD

.DEFAULT_GOAL := help

.PHONY: help
help: ## list the targets
	@grep -E '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  %-14s %s\n", $$1, $$2}'

.PHONY: test
test: lint ## everything: lint, all tests with the race detector (never cached: they talk to PostgreSQL), bolt's again without its log, every example
	$(GO) test $(RACE) -count=1 -timeout $(TIMEOUT) $(PKGS)
	EVENTSTORE_BOLT_NOWAL=1 $(GO) test $(RACE) -count=1 -timeout $(TIMEOUT) ./bolt/
	cd bench && $(GO) test $(RACE) -count=1 -timeout $(TIMEOUT) ./...
	$(MAKE) --no-print-directory examples

.PHONY: example
example: ## run the quickstart: a user's history appended to a bolt file and replayed
	$(GO) run ./examples/quickstart

.PHONY: examples
examples: ## run every program in examples/ (postgres only when a server answers or CI=true)
	@set -e; for d in examples/*/; do \
		name=$$(basename $$d); \
		if [ "$$name" = postgres ] && [ "$${CI:-}" != true ] && ! pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then \
			echo "=== SKIP examples/$$name: no PostgreSQL on 127.0.0.1:5432 (run scripts/postgres-up.sh)"; continue; fi; \
		echo "=== examples/$$name"; $(GO) run ./$$d >/dev/null; \
	done; echo "examples: all ran"

.PHONY: lint
lint: ## gofmt check and go vet
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
		if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)
	cd bench && $(GO) vet ./...

.PHONY: cover
cover: ## test coverage report in cover.html
	$(GO) test -coverprofile=cover.out $(PKGS)
	$(GO) tool cover -html=cover.out -o cover.html
	$(GO) tool cover -func=cover.out | tail -n 1

.PHONY: bench
bench: ## run bench/ and write bench/RESULTS.md and its charts (fixtures cached: EVENTSTORE_BENCH_CACHE)
	cd bench && $(GO) run ./cmd/results -o RESULTS.md

.PHONY: bench-compare
bench-compare: ## benchstat between two refs: make bench-compare OLD=main~3 NEW=main
	bash bench/compare.sh $(OLD) $(NEW) $(COUNT)

.PHONY: postgres-up
postgres-up: ## start (or install) the local PostgreSQL the tests use
	bash scripts/postgres-up.sh
