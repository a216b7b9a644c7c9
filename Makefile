# switchboard — build, run and test.
#
#   make build               build bin/switchboard
#   make run                 run switchboard in the foreground on samples/ (embedded broker)
#   make test                start the real Apache Kafka broker, vet + test everything
#                            with -race against it, always stop the broker
#   make kafka-up/-down      single-node Kafka 4.x (PLAINTEXT + SASL_SSL) for local work;
#                            `. $(KAFKA_INSTANCE_DIR)/env` then go test uses it
#   make kafka-cluster-up/-down   3-node KRaft cluster (scripts/kafka.sh node-stop N /
#                            node-start N bounce one node)

SHELL := /bin/bash

# gohs' literal API needs the hyperscan_v54 build tag (Debian libhyperscan-dev 5.4).
GOFLAGS ?= -tags=hyperscan_v54
export GOFLAGS

GO          ?= go
KAFKA_SH    := scripts/kafka.sh
KAFKA_INSTANCE_DIR ?= /tmp/switchboard-kafka
export KAFKA_INSTANCE_DIR
TEST_TIMEOUT ?= 30m
TEST_FLAGS  ?= -race -count=1 -timeout $(TEST_TIMEOUT)
PKGS        ?= ./...

.PHONY: all build run vet test test-go kafka-up kafka-down kafka-cluster-up kafka-cluster-down kafka-version

all: build

build:
	$(GO) build -o bin/switchboard ./cmd/switchboard

run:
	$(GO) run ./cmd/switchboard -f -c -C samples

vet:
	$(GO) vet $(PKGS)

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
test:
	@set -uo pipefail; \
	trap 'bash $(KAFKA_SH) down' EXIT; \
	envfile=$$(bash $(KAFKA_SH) up | tail -n 1) || { echo "make test: Kafka broker failed to start" >&2; exit 1; }; \
	set -a; . "$$envfile"; set +a; \
	echo "=== make test: Apache Kafka $$KAFKA_VERSION at $$KAFKA_BOOTSTRAP (SASL_SSL $$KAFKA_SASL_BOOTSTRAP, $$KAFKA_SASL_MECHANISM)"; \
	$(MAKE) --no-print-directory test-go; status=$$?; \
	echo "=== make test: exit status $$status (Apache Kafka $$KAFKA_VERSION at $$KAFKA_BOOTSTRAP)"; \
	exit $$status

# test-go: vet + tests against whatever KAFKA_* the environment holds (embedded broker
# when none, except under CI=true).
test-go:
	$(GO) vet $(PKGS)
	$(GO) test $(TEST_FLAGS) $(PKGS)
