# The two commands: `make dev` runs the platform on the embedded defaults, `make test`
# runs every test. Both install what is missing first.
SHELL := /bin/bash
export PATH := $(PATH):/opt/swift/usr/bin
PYTHON ?= python3
AEROGRID := .build/debug/aerogrid
# Every pytest suite runs with Tests/skip_policy.py: a skip is reported loudly, and in CI
# (CI=true) one not listed in Tests/allowed-skips.txt fails the run. The suites' shared
# fixtures (prerequisites, scratch directories, Kafka and a server) are Tests/support/plugin.py's.
PYTEST = PYTHONPATH=$(CURDIR)/Tests $(PYTHON) -m pytest -p skip_policy -p support.plugin

.PHONY: dev test deps build lint lint-swift lint-python test-swift test-sandbox-c test-integration test-python test-deploy bench bench-docs bench-runtime bench-sandbox bench-fanout bench-soak bench-cluster clean

# make dev DEV_ARGS=--no-demo leaves out the demo app and its orders.
dev: build
	$(AEROGRID) dev $(DEV_ARGS)

test: lint build test-deploy test-swift test-sandbox-c test-integration test-python test-browser test-excel test-examples test-e2e

deps:
	@scripts/setup

build: deps
	swift build --build-tests

# One test at a time: the sandbox's CPU-quota and timing checks must not share the two
# cores with other suites' apps (about 70 s instead of 20).
test-swift: build
	swift test --skip-build --no-parallel

# The sandbox's C child path on its own (needs root): 99 checks, among them the host's
# process count around a fork bomb, which only a run with nothing else going on can compare.
test-sandbox-c: deps
	Tests/sandbox-c/test.sh

# The runtime's acceptance against the built binary: embedded Kafka, kcat, sandboxed apps
# (needs root). Run with -s to see the numbers: make test-integration PYTEST_ARGS=-s
test-integration: build
	cd Tests/Integration && $(PYTEST) -q -p no:cacheprovider $(PYTEST_ARGS)

# The web console in headless Chromium against a real server (needs root); screenshots and
# the numbers (axe, long tasks) in .build/screenshots/. Run with -s to see them.
test-browser: build
	cd Tests/Browser && $(PYTEST) -q -p no:cacheprovider $(PYTEST_ARGS)

test-python: deps
	cd python && $(PYTEST) -q -p no:cacheprovider tests

# The Kubernetes manifests (deploy/kubernetes), with no cluster: each validated strictly against
# Kubernetes' schemas (kubernetes-validate, offline), and checked against the code: the pods'
# configuration given to the built `aerogrid serve` and to the parser's key lists, the ports,
# probe paths, Services, disruption budget and kustomization; and every check run on a copy
# broken the way it guards against, where it must fail (docs/cluster.md, "Kubernetes").
test-deploy: build
	cd Tests/Deploy && $(PYTEST) -q -p no:cacheprovider $(PYTEST_ARGS)

# The Excel add-in (clients/excel) under node against the built server (needs root): the
# functions through a stand-in for Excel's runtime, the manifest, and the task pane in
# headless Chromium; and the stream client it shares with the console (clients/shared:
# key order, backoff, replica). docs/excel.md.
test-excel: build
	node --experimental-websocket --test Tests/Shared/*.test.mjs Tests/Excel/*.test.mjs

# Examples/fx-ticker and Examples/pixels against embedded Kafka, with the SDK's runner and
# deployed to a real server (needs root). Run with -s to see the pixels' frames/s.
test-examples: build
	$(PYTEST) -q -p no:cacheprovider $(PYTEST_ARGS) Examples

# The README's walkthrough, its commands taken from README.md: `aerogrid dev --no-demo`, the
# orders app deployed, orders from kcat, the grid over the stream and REST, then Ctrl-C and
# nothing left behind (needs root). Run with -s to see every command.
test-e2e: build
	cd Tests/EndToEnd && $(PYTEST) -q -p no:cacheprovider $(PYTEST_ARGS)

# Both lints, first in `make test`: a finding fails it before anything is built.
lint: lint-swift lint-python

# The Swift code against .swift-format (layout and rules; `swift format` is in the
# toolchain). To fix the layout: swift format format --in-place --recursive Sources Tests Benchmarks Package.swift
lint-swift:
	swift format lint --strict --parallel --recursive Sources Tests Benchmarks Package.swift

# The Python code (the SDK, the tests, the benchmarks, the examples) against ruff.toml's
# rules. Not `ruff format`: the code keeps its own layout.
lint-python: deps
	$(PYTHON) -m ruff check

# Speed and memory, each next to its baseline (release builds; see docs/performance.md):
# every benchmark writes its report to .build/bench/NAME.json and fails on a wrong result;
# then one report of them all, .build/bench/report.json.
bench: bench-runtime bench-sandbox bench-fanout bench-soak bench-cluster
	$(PYTHON) Benchmarks/report.py

# docs/performance.md's results tables, rewritten from the reports `make bench` wrote.
bench-docs:
	$(PYTHON) Benchmarks/report.py --docs docs/performance.md

# The seed app against the baseline (records/s, CPU per side, records per CPU-second), the
# native handler, latency and memory: three runs each, min/median/max, a non-zero exit when a
# result is wrong. Extra arguments: make bench-runtime BENCH_ARGS="--orders 480000".
bench-runtime: deps
	swift build -c release --product aerogrid
	swift build -c release --product aerogrid-bench
	mkdir -p .build/bench
	.build/release/aerogrid-bench --json .build/bench/runtime.json $(BENCH_ARGS)

# Start-up cost of a sandbox: the launcher next to bare runs and bubblewrap, and
# Sandbox.launch inside a process as the supervisor calls it (needs root and bwrap).
# Extra arguments: make bench-sandbox SANDBOX_BENCH_ARGS="--runs 60".
bench-sandbox: deps
	swift build -c release --product aerogrid-sandbox
	swift build -c release --product aerogrid-launch-bench
	mkdir -p .build/bench
	$(PYTHON) Benchmarks/sandbox_startup.py --launcher .build/release/aerogrid-sandbox \
		--launch-bench .build/release/aerogrid-launch-bench --json .build/bench/sandbox-startup.json $(SANDBOX_BENCH_ARGS)

# The stream: many WebSocket clients on one grid under a steady write rate, next to a
# one-client run (a real server in its own process), three times. Extra arguments:
# make bench-fanout FANOUT_BENCH_ARGS="--clients 200 --seconds 10".
bench-fanout: deps
	swift build -c release --product aerogrid
	swift build -c release --product aerogrid-fanout-bench
	mkdir -p .build/bench
	.build/release/aerogrid-fanout-bench --json .build/bench/fanout.json $(FANOUT_BENCH_ARGS)

# One hostile tenant (huge log lines, hoarded batch frames, anonymous and slow connections,
# idle subscriptions, unread replies) against a good one with 50 stream clients: the server
# stays up, its RSS bounded, the good grid exact, its p99 within 1.5x of a run alone (needs
# root). Extra arguments: make bench-soak SOAK_BENCH_ARGS="--seconds 30 --runs 1".
bench-soak: deps
	swift build -c release --product aerogrid
	mkdir -p .build/bench
	PYTHONPATH=$(CURDIR)/Tests $(PYTHON) Benchmarks/soak.py --json .build/bench/soak.json $(SOAK_BENCH_ARGS)

# Apps on a cluster (docs/performance.md, "A cluster"): a killed node's apps running elsewhere
# and their first delta at a client on another node; the seed app's records/s with its grids
# in the changelog against checkpoints to SQLite, side by side; a replica's lag behind the
# owner at 10,000 cell changes a second. Three runs; fails when a grid is not exact.
bench-cluster: deps
	swift build -c release --product aerogrid
	mkdir -p .build/bench
	PYTHONPATH=$(CURDIR)/Tests $(PYTHON) Benchmarks/cluster.py --json .build/bench/cluster.json $(CLUSTER_BENCH_ARGS)

clean:
	rm -rf .build .build-c
