#!/usr/bin/env bash
# bench-all.sh — every side-by-side benchmark of switchboard in one go, on one
# real broker it starts itself; writes BENCHMARKS.md at the repository root.
# `make bench` runs it.
#
#   1. res_kafka Produce and ProduceBatch(256) vs kcat, franz-go's kgo and
#      Kafka's own org.apache.kafka.tools.ProducerPerformance
#      (scripts/bench-produce.sh):
#      same broker, 100-byte messages, acks=1, linger.ms=5, same count.
#   2. CDR pipeline vs raw res_kafka produce (modules/cdrkafka/bench.sh).
#   2b. CPU of the idle daemon (sample configuration, real broker, no
#      traffic) vs an idle kcat consumer group (scripts/bench-idle.sh).
#   3. res_policy hash tier vs a Go map suffix walk on the real phishing +
#      tracking lists, SYNC_COMPLETE-to-active, bytes per domain
#      (go test -bench in modules/respolicy).
#   3b. res_policy pattern rules (1k and 10k, derived from the lists) vs Go's
#      regexp, compile + swap of 10k rules, resident memory over ten
#      re-syncs of a 500k-domain group.
#   4. pkt_engine vs dnscap on a 1M-query capture with a 300k-domain policy
#      (scripts/bench-engine.sh; the capture is generated once and kept).
#   4b. live capture under tcpreplay into a veth pair (the other end in a
#      network namespace the script creates): pkt_engine's libpcap source,
#      its AF_PACKET source and dnscap live; the highest rate each keeps
#      under 0.1% loss (scripts/bench-live.sh; needs root).
#   5. dns_firewall vs dnsdist under dnsperf on loopback, same unbound
#      upstream, same 300k-domain block list, 5% blocked queries
#      (scripts/bench-dns.sh).
#
# Every comparison runs ROUNDS rounds with the peers interleaved within a
# round; the report gives medians and ratios, and a target is met only when
# every round meets it. The broker
# (KAFKA_INSTANCE_DIR=$BENCH_KAFKA_DIR bash scripts/kafka.sh up) is stopped
# after the Kafka sections (so that it does not compete for the CPU in the
# CPU-bound ones) and, whatever happens, on exit.
#
# Environment (defaults: 16–18 minutes on the 2-core VM in three runs, more when
# it is loaded; the budget is 25 minutes):
#   ROUNDS                 rounds per comparison (3)
#   BENCH_PRODUCE_N        messages per client and round (3000000: ~3 s per
#                          client on an idle machine; 1M runs lasted ~1 s and
#                          swung by 25% between rounds)
#   BENCH_CDR_N            CDRs / messages per run and round (1000000)
#   BENCH_POLICY_N         lookups per sub-benchmark and round (2000000)
#   BENCH_SYNC_N           SYNC_COMPLETEs per round (5)
#   BENCH_POLICY_HS        1: also the Hyperscan burst sub-benchmark (~50 s
#                          compile and ~850 MB; off by default)
#   BENCH_IDLE_S           seconds the idle daemon and the idle kcat consumer
#                          are measured per round (60)
#   BENCH_PATTERN_N        names per Hyperscan pattern variant and round (500000)
#   BENCH_PATTERN_RE_N     names per Go regexp variant and round (100: a loop
#                          over 10,000 expressions takes ~5 ms per name)
#   BENCH_ENGINE_N         queries in the capture (1000000)
#   BENCH_ENGINE_DOMAINS   policy domains for pkt_engine (300000)
#   BENCH_DNS_S            seconds of each dnsperf run (10; four per round)
#   BENCH_KAFKA_DIR        broker instance dir (/tmp/switchboard-bench-kafka)
#   BENCH_DIR              work dir: logs, test binaries, the capture
#                          (/tmp/switchboard-bench-all)
#   BENCH_OUT              report file (BENCHMARKS.md)
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

ROUNDS=${ROUNDS:-3}
PRODUCE_N=${BENCH_PRODUCE_N:-3000000}
CDR_N=${BENCH_CDR_N:-1000000}
POLICY_N=${BENCH_POLICY_N:-2000000}
SYNC_N=${BENCH_SYNC_N:-5}
PATTERN_N=${BENCH_PATTERN_N:-500000}
IDLE_S=${BENCH_IDLE_S:-60}
PATTERN_RE_N=${BENCH_PATTERN_RE_N:-100}
ENGINE_N=${BENCH_ENGINE_N:-1000000}
ENGINE_DOMAINS=${BENCH_ENGINE_DOMAINS:-300000}
DNS_S=${BENCH_DNS_S:-10}
KDIR=${BENCH_KAFKA_DIR:-/tmp/switchboard-bench-kafka}
WORK=${BENCH_DIR:-/tmp/switchboard-bench-all}
OUT=${BENCH_OUT:-BENCHMARKS.md}
export GOFLAGS="-mod=mod"
mkdir -p "$WORK/logs"
rm -f "$WORK"/logs/*

say() { echo "=== bench-all: $*" >&2; }
broker_down() {
	[[ -n "${broker_started:-}" ]] || return 0
	KAFKA_INSTANCE_DIR="$KDIR" bash scripts/kafka.sh down >/dev/null 2>&1 || true
	broker_started=
}
trap broker_down EXIT
trap 'exit 130' INT TERM

loadavg() { cut -d' ' -f1-3 /proc/loadavg; }
t_start=$(date +%s)
echo "load_before=$(loadavg)" >"$WORK/logs/meta"
echo "started=$(date -u '+%Y-%m-%d %H:%M UTC')" >>"$WORK/logs/meta"

# section NAME COMMAND...: run, log to $WORK/logs/NAME.log, record status, time and load.
section() {
	local name=$1 t0 st
	shift
	say "$name: $*"
	t0=$(date +%s)
	echo "load_start=$(loadavg)" >"$WORK/logs/$name.meta"
	"$@" 2>&1 | tee "$WORK/logs/$name.log"
	st=${PIPESTATUS[0]}
	{
		echo "status=$st"
		echo "seconds=$(($(date +%s) - t0))"
		echo "load_end=$(loadavg)"
	} >>"$WORK/logs/$name.meta"
	say "$name: exit $st after $(($(date +%s) - t0)) s"
}

# ---------------------------------------------------------------- broker
say "starting the broker in $KDIR"
envf=$(KAFKA_INSTANCE_DIR="$KDIR" bash scripts/kafka.sh up | tail -n 1) || { say "the broker did not start"; exit 1; }
broker_started=1
set -a
# shellcheck disable=SC1090
. "$envf"
set +a
tools=$(bash scripts/kafka.sh fetch-tools | tail -n 1) || tools=""
echo "kafka_tools=$tools" >>"$WORK/logs/meta"

# ---------------------------------------------------------------- Kafka sections
section produce env N="$PRODUCE_N" ROUNDS="$ROUNDS" BATCH=256 LINGER_MS=5 KAFKA_TOOLS_LIBS="$tools" \
	bash scripts/bench-produce.sh
section cdr bash modules/cdrkafka/bench.sh "$ROUNDS" "$CDR_N"
section idle env ROUNDS="$ROUNDS" SECONDS_IDLE="$IDLE_S" bash scripts/bench-idle.sh
say "stopping the broker (the remaining sections do not use it)"
broker_down

# ---------------------------------------------------------------- policy
policy_bench() {
	go test -c -o "$WORK/respolicy.test" ./modules/respolicy/ || return 1
	local nohs=1
	[[ "${BENCH_POLICY_HS:-}" == 1 ]] && nohs=
	(cd modules/respolicy && RESPOLICY_BENCH_NO_HS=$nohs "$WORK/respolicy.test" -test.run '^$' \
		-test.bench '^BenchmarkLookup$' -test.benchtime "${POLICY_N}x" -test.count "$ROUNDS" -test.benchmem) || return 1
	(cd modules/respolicy && "$WORK/respolicy.test" -test.run '^$' \
		-test.bench '^BenchmarkSyncComplete$' -test.benchtime "${SYNC_N}x" -test.count "$ROUNDS") || return 1
}
section policy policy_bench

# ---------------------------------------------------------------- patterns
pattern_bench() {
	local r
	[[ -x "$WORK/respolicy.test" ]] || go test -c -o "$WORK/respolicy.test" ./modules/respolicy/ || return 1
	for r in $(seq 1 "$ROUNDS"); do
		echo "round $r"
		(cd modules/respolicy && "$WORK/respolicy.test" -test.run '^$' -test.bench '^BenchmarkPatterns$/^hyperscan/' \
			-test.benchtime "${PATTERN_N}x") || return 1
		(cd modules/respolicy && "$WORK/respolicy.test" -test.run '^$' -test.bench '^BenchmarkPatterns$/^go-regexp' \
			-test.benchtime "${PATTERN_RE_N}x") || return 1
		(cd modules/respolicy && "$WORK/respolicy.test" -test.run '^$' -test.bench '^BenchmarkPatternSync$' \
			-test.benchtime 1x) || return 1
	done
	(cd modules/respolicy && "$WORK/respolicy.test" -test.run '^$' -test.bench '^BenchmarkResyncMemory$' -test.benchtime 1x) || return 1
}
section patterns pattern_bench

# ---------------------------------------------------------------- engine
section engine env N="$ENGINE_N" DOMAINS="$ENGINE_DOMAINS" RUNS="$ROUNDS" BENCH_DIR="$WORK/engine" \
	bash scripts/bench-engine.sh

# ---------------------------------------------------------------- live
section live env BENCH_DIR="$WORK/live" bash scripts/bench-live.sh

# ---------------------------------------------------------------- dns
section dns env ROUNDS="$ROUNDS" DURATION="$DNS_S" DOMAINS="$ENGINE_DOMAINS" BENCH_DIR="$WORK/dns" \
	bash scripts/bench-dns.sh

{
	echo "load_after=$(loadavg)"
	echo "seconds=$(($(date +%s) - t_start))"
} >>"$WORK/logs/meta"

# ---------------------------------------------------------------- report
kcat_v=$(kcat -V 2>&1 | sed -n 's/^Version \([^ ]*\) .*librdkafka \([0-9.]*\).*/kcat \1 (librdkafka \2)/p' | head -n 1)
# The librdkafka res_kafka links is the one confluent-kafka-go bundles: its
# header in the module cache names the version (read there, not copied).
ckg_dir=$(go list -m -f '{{.Dir}}' github.com/confluentinc/confluent-kafka-go/v2 2>/dev/null)
rdk_hex=$(sed -n 's/^#define RD_KAFKA_VERSION 0x\([0-9a-f]*\).*/\1/p' "$ckg_dir/kafka/librdkafka_vendor/rdkafka.h" 2>/dev/null)
rdk_v=""
[[ -n "$rdk_hex" ]] && rdk_v="$((16#${rdk_hex:0:2})).$((16#${rdk_hex:2:2})).$((16#${rdk_hex:4:2}))"
dirty=$(git status --porcelain --untracked-files=no -- . ':!BENCHMARKS.md' | awk '{print $2}' | tr '\n' ' ')
{
	echo "nproc=$(nproc)"
	echo "cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)"
	echo "mem=$(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo)"
	echo "go=$(go version | awk '{print $3, $4}')"
	echo "kafka=${KAFKA_VERSION:-?}"
	echo "java=$(java -version 2>&1 | head -n 1)"
	echo "librdkafka=$rdk_v"
	echo "kcat=$kcat_v"
	echo "dnscap=$(dnscap -V 2>&1 | head -n 1)"
	echo "commit=$(git rev-parse --short HEAD)"
	echo "dirty=$dirty"
	echo "rounds=$ROUNDS"
	echo "produce_n=$PRODUCE_N"
	echo "cdr_n=$CDR_N"
	echo "policy_n=$POLICY_N"
	echo "sync_n=$SYNC_N"
	echo "engine_n=$ENGINE_N"
	echo "engine_domains=$ENGINE_DOMAINS"
	echo "policy_hs=${BENCH_POLICY_HS:-0}"
	echo "pattern_n=$PATTERN_N"
	echo "idle_s=$IDLE_S"
	echo "dns_s=$DNS_S"
	echo "dnsdist=$(dnsdist --version 2>/dev/null | head -n 1)"
	echo "dnsperf=$(dnsperf -h 2>&1 | grep -m1 Version)"
	echo "pattern_re_n=$PATTERN_RE_N"
} >>"$WORK/logs/meta"

python3 "$ROOT/scripts/bench-report.py" "$WORK/logs" >"$WORK/BENCHMARKS.md.tmp" || { say "report generation failed"; exit 1; }
mv "$WORK/BENCHMARKS.md.tmp" "$OUT"
say "wrote $OUT in $(($(date +%s) - t_start)) s (logs in $WORK/logs)"
fail=0
for m in "$WORK"/logs/*.meta; do grep -q '^status=0$' "$m" || fail=1; done
exit $fail
