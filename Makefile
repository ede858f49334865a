# The two commands: `make dev` runs the platform on the embedded defaults, `make test`
# runs every test. Both install what is missing first.
SHELL := /bin/bash
export PATH := $(PATH):/opt/swift/usr/bin
PYTHON ?= python3
AEROGRID := .build/debug/aerogrid

.PHONY: dev test deps build test-swift test-python test-integration clean bench-sandbox

dev: build
	$(AEROGRID) kafka up --topic orders:8

test: build test-swift test-integration test-python

deps:
	@scripts/setup

build: deps
	swift build --build-tests

test-swift: build
	swift test --skip-build

# Issue 4's acceptance against the built binary: embedded Kafka, kcat, sandboxed apps (needs
# root). Run with -s to see the numbers: make test-integration PYTEST_ARGS=-s
test-integration: build
	cd Tests/Integration && $(PYTHON) -m pytest -q -p no:cacheprovider $(PYTEST_ARGS)

test-python: deps
	@if [ -d python/tests ]; then cd python && $(PYTHON) -m pytest -q tests; fi

clean:
	rm -rf .build

# Start-up cost of the sandbox launcher next to bare runs and bubblewrap (needs root and
# bwrap; see docs/sandbox.md). Extra arguments: make bench-sandbox BENCH_ARGS="--runs 60".
bench-sandbox: deps
	swift build -c release --product aerogrid-sandbox
	$(PYTHON) Benchmarks/sandbox_startup.py --launcher .build/release/aerogrid-sandbox $(BENCH_ARGS)
