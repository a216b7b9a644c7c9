#!/usr/bin/env bash
# bench-engine.sh — pkt_engine vs dnscap on the same synthetic capture, in one run.
#
#   scripts/bench-engine.sh                 # 1M queries, 300k-domain policy
#   N=200000 DOMAINS=100000 scripts/bench-engine.sh
#
# 1. cmd/mkcapture writes N DNS queries (seed 1) from 10k subscribers (20% IPv6),
#    30% of them for names from the real block lists, the rest benign.
# 2. dnscap reads it with one name pattern: dnscap -r FILE -x PATTERN -g
#    (-g writes the matching messages to stderr, sent to /dev/null; every packet
#    is still read, parsed and matched against the pattern).
# 3. pkt_engine reads the same file: decode, subscriber lookup, res_policy
#    decision against DOMAINS block-list domains (real res_policy module), and
#    every CDR JSON-encoded through the real cdr engine (TestBenchFile).
# Both run RUNS times, interleaved (dnscap, then pkt_engine, in each run); the
# best run of each is reported. Packets per second are wall-clock; "per
# CPU-second" divides by user+sys CPU time, which is what matters on a machine
# shared with other work. Each run also prints a machine-readable line:
#   RESULT bench=engine round=R tool=dnscap|pkt_engine pps=X pps_per_cpu=Y wall_s=W cpu_s=C
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-1000000}
DOMAINS=${DOMAINS:-300000}
RUNS=${RUNS:-3}
PATTERN=${PATTERN:-'\.ru\.$'}
BL=${BLOCKLISTS:-testdata/blocklists}
OUT=${BENCH_DIR:-/tmp/switchboard-bench}
mkdir -p "$OUT"
PCAP=$OUT/dns-$N.pcap
export GOFLAGS=${GOFLAGS:--mod=mod}

go build -o "$OUT/mkcapture" ./cmd/mkcapture
if [ ! -s "$PCAP" ]; then
	"$OUT/mkcapture" -n "$N" -seed 1 -blocklists "$BL" -o "$PCAP"
fi
go test -c -o "$OUT/pktengine.test" ./modules/pktengine
cat "$PCAP" >/dev/null # page cache

echo "capture: $PCAP ($N queries, $(du -h "$PCAP" | cut -f1)); $(nproc) CPUs; load: $(cut -d' ' -f1-3 /proc/loadavg)"
matched=$(dnscap -r "$PCAP" -x "$PATTERN" -g 2>&1 >/dev/null | grep -c '^\[' || true)
echo "dnscap $(dnscap -V 2>&1 | head -1 | awk '{print $NF}'): -x '$PATTERN' matches $matched messages"

best_dnscap=""
best_engine=""
for i in $(seq "$RUNS"); do
	/usr/bin/time -f '%e %U %S' -o "$OUT/dnscap.time" dnscap -r "$PCAP" -x "$PATTERN" -g 2>/dev/null >/dev/null
	read -r wall user sys <"$OUT/dnscap.time"
	line=$(awk -v n="$N" -v w="$wall" -v u="$user" -v s="$sys" 'BEGIN{c=u+s; if (c<=0) c=0.001; printf "%.0f %.0f %.2f %.2f", n/w, n/c, w, c}')
	echo "  dnscap run $i: wall ${wall}s cpu $(echo "$line" | cut -d' ' -f4)s -> $(echo "$line" | cut -d' ' -f1) pkts/s, $(echo "$line" | cut -d' ' -f2) pkts/cpu-s"
	echo "$line" | awk -v i="$i" '{print "RESULT bench=engine round=" i " tool=dnscap pps=" $1 " pps_per_cpu=" $2 " wall_s=" $3 " cpu_s=" $4}'
	if [ -z "$best_dnscap" ] || [ "$(echo "$line" | cut -d' ' -f1)" -gt "$(echo "$best_dnscap" | cut -d' ' -f1)" ]; then best_dnscap=$line; fi

	res=$(cd modules/pktengine && PKT_BENCH_PCAP="$PCAP" PKT_BENCH_DOMAINS="$DOMAINS" SWITCHBOARD_BLOCKLISTS="$BL" \
		"$OUT/pktengine.test" -test.run '^TestBenchFile$' -test.v | grep '^RESULT')
	pps=$(echo "$res" | sed 's/.* pps=\([0-9]*\).*/\1/')
	ppc=$(echo "$res" | sed 's/.*pps_per_cpu=\([0-9]*\).*/\1/')
	echo "  pkt_engine run $i: ${res#RESULT }"
	echo "RESULT bench=engine round=$i tool=pkt_engine ${res#RESULT }"
	if [ -z "$best_engine" ] || [ "$pps" -gt "$(echo "$best_engine" | cut -d' ' -f1)" ]; then best_engine="$pps $ppc"; fi
done

read -r d_pps d_ppc _ _ <<<"$best_dnscap"
read -r e_pps e_ppc <<<"$best_engine"
awk -v dp="$d_pps" -v dc="$d_ppc" -v ep="$e_pps" -v ec="$e_ppc" 'BEGIN{
	printf "\n%-12s %14s %18s\n", "", "packets/s", "packets/CPU-second"
	printf "%-12s %14.0f %18.0f\n", "dnscap", dp, dc
	printf "%-12s %14.0f %18.0f\n", "pkt_engine", ep, ec
	printf "%-12s %13.2fx %17.2fx   (target >= 3x)\n", "ratio", ep/dp, ec/dc
}'
