# switchboard — build, run and test.
#
#   make build               build bin/switchboard
#   make run                 run switchboard in the foreground on samples/ (embedded broker)
#   make test                start the real Apache Kafka broker, lint + test everything
#                            with -race against it, always stop the broker
#   make lint                go vet, staticcheck and deadcode (both pinned by version);
#                            fails on any finding (make test runs it first)
#   make kafka-up/-down      single-node Kafka 4.x (PLAINTEXT, SASL_SSL, OAUTHBEARER, mTLS) for local work;
#                            `. $(KAFKA_INSTANCE_DIR)/env` then go test uses it
#   make kafka-cluster-up/-down   3-node KRaft cluster (scripts/kafka.sh node-stop N /
#                            node-start N bounce one node)
#   make test-faults         system tests of the real binary against real brokers (a
#                            3-node cluster and private single brokers it starts and
#                            always stops): bounces, outages, kill -9, reloads, network
#                            faults, scale-out, security; prints a table of the scenarios.
#                            Build tag "faults": `make test` does not run them.

SHELL := /bin/bash

GO          ?= go
KAFKA_SH    := scripts/kafka.sh
KAFKA_INSTANCE_DIR ?= /tmp/switchboard-kafka
export KAFKA_INSTANCE_DIR
TEST_TIMEOUT ?= 30m
TEST_FLAGS  ?= -race -count=1 -timeout $(TEST_TIMEOUT)
PKGS        ?= ./...

.DELETE_ON_ERROR:

.PHONY: all build deps run demo-data bench vet lint test test-go test-faults kafka-up kafka-down kafka-cluster-up kafka-cluster-down kafka-version

all: build

# build: -v lists each package as it compiles (the first build compiles them all, about a
# minute; later builds list only what changed).
build:
	@echo "make: building bin/switchboard"
	$(GO) build -v -o bin/switchboard ./cmd/switchboard

# run: the demo on the embedded broker (samples/cli.conf publishes the policy feed, waits
# for the sync, then replays the capture). Data (spool, socket) under var/data.
DEMO_DIR     ?= var/demo
BLOCKLISTS   ?= testdata/blocklists
DEMO_QUERIES ?= 200000
DEMO_PPS     ?= 2000
run: deps build demo-data
	bin/switchboard -c -C samples -D var/data

# deps: the Debian packages the build and the tests need (installed only if missing).
deps:
	@bash scripts/deps.sh

# The demo data is rebuilt when a block list or a generator's source changes;
# the generators write their output whole or not at all.
LIST_FILES     := $(wildcard $(BLOCKLISTS)/*.txt $(BLOCKLISTS)/*.txt.gz)
FEED_SOURCES   := $(wildcard cmd/mkpolicyfeed/*.go internal/blocklist/*.go internal/atomicfile/*.go modules/respolicy/message.go modules/respolicy/name.go)
CAPTURE_SOURCES := $(wildcard cmd/mkcapture/*.go internal/blocklist/*.go internal/atomicfile/*.go modules/pktengine/capgen/*.go)

demo-data: $(DEMO_DIR)/policy_feed.jsonl $(DEMO_DIR)/demo.pcap

$(DEMO_DIR)/policy_feed.jsonl: $(LIST_FILES) $(FEED_SOURCES)
	@mkdir -p $(DEMO_DIR)
	$(GO) run ./cmd/mkpolicyfeed -lists $(BLOCKLISTS) -o $@

$(DEMO_DIR)/demo.pcap: $(LIST_FILES) $(CAPTURE_SOURCES)
	@mkdir -p $(DEMO_DIR)
	$(GO) run ./cmd/mkcapture -n $(DEMO_QUERIES) -pps $(DEMO_PPS) -blocklists $(BLOCKLISTS) -o $@

# bench: every side-by-side benchmark (res_kafka vs kcat and Kafka's ProducerPerformance, CDR
# pipeline vs raw produce, policy hash tier vs Go map, pkt_engine vs dnscap, dns_firewall vs
# dnsdist and CoreDNS under dnsperf) on its own real broker (always stopped), ROUNDS rounds
# (default 3), medians and ratios -> BENCHMARKS.md.
# Counts and other knobs: see scripts/bench-all.sh. 16–18 minutes on the 2-core VM (three runs),
# plus the first time a CoreDNS build (once, into ~/.cache/switchboard-bench).
BENCH_KAFKA_DIR ?= /tmp/switchboard-bench-kafka
bench:
	BENCH_KAFKA_DIR=$(BENCH_KAFKA_DIR) bash scripts/bench-all.sh

vet:
	$(GO) vet $(PKGS)

# lint: go vet, staticcheck and deadcode over the whole module (LINT_PKGS), with the
# build tag of test/faults so those files are checked too. The tools are pinned by
# version; go run fetches and builds each once into the Go caches. deadcode lists the
# functions no binary of the module reaches; the packages only tests import (the
# fixtures in DEADCODE_IGNORE) are left out, anything else fails the target: remove
# the function, or move it into a _test.go file when only tests use it.
STATICCHECK_VERSION ?= v0.8.2
DEADCODE_VERSION    ?= v0.52.0
LINT_PKGS           ?= ./...
LINT_TAGS           ?= faults
DEADCODE_IGNORE     := internal/kafkatest/|internal/dnstest/|internal/syncbuf/|internal/testwait/
lint:
	$(GO) vet -tags $(LINT_TAGS) $(LINT_PKGS)
	$(GO) run honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION) -tags $(LINT_TAGS) $(LINT_PKGS)
	@echo "$(GO) run golang.org/x/tools/cmd/deadcode@$(DEADCODE_VERSION) $(LINT_PKGS)"; \
	found=$$($(GO) run golang.org/x/tools/cmd/deadcode@$(DEADCODE_VERSION) $(LINT_PKGS)) || exit 1; \
	found=$$(printf '%s\n' "$$found" | grep -Ev '^($(DEADCODE_IGNORE))' || true); \
	if [[ -n "$$found" ]]; then \
		echo "make lint: deadcode found unreachable functions:" >&2; \
		echo "$$found" >&2; \
		exit 1; \
	fi

kafka-up:
	@bash $(KAFKA_SH) up

kafka-down:
	@bash $(KAFKA_SH) down

kafka-cluster-up:
	@bash $(KAFKA_SH) cluster-up

kafka-cluster-down:
	@bash $(KAFKA_SH) cluster-down

kafka-version:
	@bash $(KAFKA_SH) version

# test: the broker is stopped whatever happens; the recipe exits with the tests' status.
test: deps
	@set -uo pipefail; \
	trap 'bash $(KAFKA_SH) down' EXIT; \
	envfile=$$(bash $(KAFKA_SH) up | tail -n 1) || { echo "make test: Kafka broker failed to start" >&2; exit 1; }; \
	set -a; . "$$envfile"; set +a; \
	echo "=== make test: Apache Kafka $$KAFKA_VERSION at $$KAFKA_BOOTSTRAP (SASL_SSL $$KAFKA_SASL_BOOTSTRAP, $$KAFKA_SASL_MECHANISM)"; \
	$(MAKE) --no-print-directory test-go; status=$$?; \
	echo "=== make test: exit status $$status (Apache Kafka $$KAFKA_VERSION at $$KAFKA_BOOTSTRAP)"; \
	exit $$status

# test-go: lint + tests against whatever KAFKA_* the environment holds (embedded broker
# when none, except under CI=true).
test-go: lint
	$(GO) test $(TEST_FLAGS) $(PKGS)
	@echo "make: memory bounds, measured without the race detector (its shadow memory swamps them)"
	$(GO) test -count=1 -run '^TestRetentionBoundsMemory$$' ./modules/reskafka/embedded/

# test-faults: every broker lives under FAULTS_DIR; the tests stop them, and the trap
# stops whatever a crashed or timed-out test binary left behind.
FAULTS_DIR     ?= /tmp/switchboard-faults
FAULTS_TIMEOUT ?= 25m
FAULTS_RUN     ?= .
test-faults:
	@set -uo pipefail; \
	cleanup() { \
		KAFKA_CLUSTER_DIR="$(FAULTS_DIR)/cluster" bash $(KAFKA_SH) cluster-down >/dev/null 2>&1 || true; \
		for d in "$(FAULTS_DIR)"/*/; do \
			[[ -f "$$d/broker.pid" ]] && KAFKA_INSTANCE_DIR="$$d" bash $(KAFKA_SH) down >/dev/null 2>&1; \
		done; true; \
	}; \
	cleanup; rm -rf "$(FAULTS_DIR)"; mkdir -p "$(FAULTS_DIR)"; \
	trap cleanup EXIT; \
	echo "=== make test-faults: brokers under $(FAULTS_DIR)"; \
	FAULTS_DIR="$(FAULTS_DIR)" FAULTS_SUMMARY="$(FAULTS_DIR)/summary.txt" \
		$(GO) test -tags faults -count=1 -v -timeout $(FAULTS_TIMEOUT) -run '$(FAULTS_RUN)' ./test/faults/; \
	status=$$?; \
	echo "=== make test-faults: exit status $$status"; \
	exit $$status
