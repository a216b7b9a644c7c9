#!/usr/bin/env bash
# bench-dns.sh — dns_firewall vs dnsdist, same upstream, same block list, same
# queries, in one run; dnsperf (Debian) as the load on loopback.
#
#   scripts/bench-dns.sh                       # 300k domains, 3 rounds
#   ROUNDS=5 DURATION=20 scripts/bench-dns.sh
#
# Setup, once per run:
#   - DOMAINS unique names from testdata/blocklists (sorted, the first DOMAINS);
#     switchboard gets them as one policy sync of group "bench" (res_policy
#     seed_file), dnsdist as a SuffixMatchNode answering NXDOMAIN (a listed
#     name and every name below it, as res_policy blocks).
#   - a query file of QUERIES names: BLOCKED_PCT% taken from the list (half of
#     them as a subdomain), the rest unlisted names under .example; shuffled
#     with a fixed seed.
#   - unbound (1 thread) on 127.0.0.1:$UPSTREAM_PORT answering every name
#     (local-zone "." redirect), the upstream of both peers; no cache in
#     either peer.
#   - switchboard: res_policy + cdr + dns_firewall only (modules.conf
#     autoload = no), 2 UDP workers, CDRs posted to the cdr engine (no
#     backend registered: each CDR is built and counted, not written).
#   - dnsdist 1.7: setLocal, newServer, the SuffixMatchNode rule.
#   - CoreDNS (the Go peer), when it builds from the Go module proxy
#     (COREDNS_VERSION; built once into $COREDNS_BIN_DIR): the list as
#     the zones of one server block answering NXDOMAIN (template ANY ANY .),
#     everything else forwarded; COREDNS=0 leaves it out.
# Each round, with the peers' order alternating round by round:
#   1. max rate: dnsperf -c 10 -q 100 for DURATION s: queries/s, average
#      latency, loss; CPU seconds of the peer, unbound and dnsperf
#      (/proc/PID/stat utime+stime) and the machine's steal over the run.
#   2. fixed rate: dnsperf -Q RATE -v for DURATION s: latency percentiles
#      (p50, p99, p99.9) of every answered query, and loss.
# Machine-readable lines, one per peer, run and round:
#   RESULT bench=dns round=R peer=P mode=max qps=X avg_ms=A lost=L servfail=F cpu_peer=C cpu_upstream=U cpu_client=D steal_pct=S
#   RESULT bench=dns round=R peer=P mode=rate rate=Q qps=X p50_ms=.. p99_ms=.. p999_ms=.. lost=L
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10}
DOMAINS=${DOMAINS:-300000}
QUERIES=${QUERIES:-100000}
BLOCKED_PCT=${BLOCKED_PCT:-5}
RATE=${RATE:-20000}
BL=${BLOCKLISTS:-testdata/blocklists}
OUT=${BENCH_DIR:-/tmp/switchboard-bench-dns}
UPSTREAM_PORT=${UPSTREAM_PORT:-25300}
SB_PORT=${SB_PORT:-25353}
DD_PORT=${DD_PORT:-25354}
CD_PORT=${CD_PORT:-25355}
COREDNS=${COREDNS:-1}
COREDNS_VERSION=${COREDNS_VERSION:-v1.15.0}
COREDNS_BIN_DIR=${COREDNS_BIN_DIR:-$HOME/.cache/switchboard-bench/coredns-$COREDNS_VERSION}
for tool in unbound dnsdist dnsperf go; do
	command -v "$tool" >/dev/null || [ -x "/usr/sbin/$tool" ] || {
		echo "bench-dns: $tool not found (scripts/deps.sh installs unbound, dnsdist and dnsperf)" >&2
		exit 1
	}
done
rm -rf "$OUT"
mkdir -p "$OUT/conf" "$OUT/data"

pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
}
trap cleanup EXIT

# ---- data
for f in "$BL"/*.txt "$BL"/*.txt.gz; do
	[ -e "$f" ] || continue
	case "$f" in *.gz) zcat "$f" ;; *) cat "$f" ;; esac
done | tr 'A-Z' 'a-z' | sed 's/[[:space:]]*#.*//; s/\.$//' | grep -E '^[a-z0-9_-]+(\.[a-z0-9_-]+)+$' |
	LC_ALL=C sort -u | awk -v n="$DOMAINS" 'NR <= n' >"$OUT/domains.txt"
n_domains=$(wc -l <"$OUT/domains.txt")
{
	echo '{"type":"BEGIN_SYNC","group_id":"bench"}'
	awk '{printf "{\"type\":\"ADD_DOMAIN\",\"group_id\":\"bench\",\"domain\":\"%s\",\"action\":\"blacklist\",\"category\":2}\n", $1}' "$OUT/domains.txt"
	echo '{"type":"SYNC_COMPLETE","group_id":"bench"}'
} >"$OUT/conf/feed.jsonl"
blocked=$((QUERIES * BLOCKED_PCT / 100))
{
	awk -v n="$blocked" -v total="$n_domains" 'BEGIN{srand(7)} {d[NR]=$1} END{for(i=0;i<n;i++){x=d[int(rand()*total)+1]; if (i%2) x="www." x; print x " A"}}' "$OUT/domains.txt"
	awk -v n=$((QUERIES - blocked)) 'BEGIN{for(i=0;i<n;i++) printf "host%d.site%d.example A\n", i, i%997}'
} | awk 'BEGIN{srand(11)} {print rand() "\t" $0}' | LC_ALL=C sort -k1,1 | cut -f2 >"$OUT/queries.txt"

# ---- upstream
cat >"$OUT/unbound.conf" <<EOF
server:
    interface: 127.0.0.1@$UPSTREAM_PORT
    port: $UPSTREAM_PORT
    do-ip6: no
    num-threads: 1
    do-daemonize: no
    chroot: ""
    username: ""
    pidfile: ""
    directory: "$OUT"
    use-syslog: no
    logfile: ""
    verbosity: 0
    access-control: 127.0.0.0/8 allow
    module-config: "iterator"
    auto-trust-anchor-file: ""
    local-zone: "." redirect
    local-data: ". 300 IN A 192.0.2.1"
remote-control:
    control-enable: no
EOF
unbound -d -c "$OUT/unbound.conf" >"$OUT/unbound.log" 2>&1 &
UB=$!
pids+=("$UB")

# ---- dnsdist
cat >"$OUT/dnsdist.conf" <<EOF
setSecurityPollSuffix("")
setLocal("127.0.0.1:$DD_PORT")
newServer({address="127.0.0.1:$UPSTREAM_PORT"})
smn = newSuffixMatchNode()
for line in io.lines("$OUT/domains.txt") do
  pcall(function() smn:add(newDNSName(line)) end)
end
addAction(SuffixMatchNodeRule(smn, true), RCodeAction(DNSRCode.NXDOMAIN))
EOF
dnsdist --supervised --disable-syslog -C "$OUT/dnsdist.conf" >"$OUT/dnsdist.log" 2>&1 &
DD=$!
pids+=("$DD")

# ---- CoreDNS
peers="switchboard:$SB_PORT dnsdist:$DD_PORT"
CD=""
if [ "$COREDNS" = 1 ]; then
	if [ ! -x "$COREDNS_BIN_DIR/coredns" ]; then
		echo "building CoreDNS $COREDNS_VERSION into $COREDNS_BIN_DIR (once)"
		mkdir -p "$COREDNS_BIN_DIR"
		GOFLAGS= GOBIN="$COREDNS_BIN_DIR" go install "github.com/coredns/coredns@$COREDNS_VERSION" >"$OUT/coredns-build.log" 2>&1 ||
			echo "CoreDNS did not build (see $OUT/coredns-build.log): left out"
	fi
	if [ -x "$COREDNS_BIN_DIR/coredns" ]; then
		{
			awk -v p="$CD_PORT" '{printf "%s%s:%s", (NR > 1 ? ",\n" : ""), $1, p} END {print " {"}' "$OUT/domains.txt"
			echo "    template ANY ANY . {"
			echo "        rcode NXDOMAIN"
			echo "    }"
			echo "}"
			echo ".:$CD_PORT {"
			echo "    forward . 127.0.0.1:$UPSTREAM_PORT"
			echo "}"
		} >"$OUT/Corefile"
		"$COREDNS_BIN_DIR/coredns" -conf "$OUT/Corefile" -dns.port "$CD_PORT" >"$OUT/coredns.log" 2>&1 &
		CD=$!
		pids+=("$CD")
		peers="$peers coredns:$CD_PORT"
	fi
fi

# ---- switchboard
go build -o "$OUT/switchboard" ./cmd/switchboard
cat >"$OUT/conf/modules.conf" <<EOF
[modules]
autoload = no
load => res_policy
load => cdr
load => dns_firewall
EOF
cat >"$OUT/conf/res_policy.conf" <<EOF
[general]
seed_file = feed.jsonl
[groups]
bench = 1
EOF
cat >"$OUT/conf/subscribers.conf" <<EOF
[general]
default_group = default
[bench]
group = bench
prefix = 127.0.0.0/8
EOF
cat >"$OUT/conf/dns_firewall.conf" <<EOF
[general]
listen = 127.0.0.1:$SB_PORT
workers = 2
[upstream]
server = 127.0.0.1:$UPSTREAM_PORT
EOF
"$OUT/switchboard" -f -C "$OUT/conf" -D "$OUT/data" -s "$OUT/ctl" >"$OUT/switchboard.log" 2>&1 &
SB=$!
pids+=("$SB")

# ---- readiness: a listed name NXDOMAIN, a subdomain of one NXDOMAIN, an unlisted name answered
probe=$(sed -n 1p "$OUT/domains.txt")
ready() {
	local port=$1
	[ "$(dig @127.0.0.1 -p "$port" "$probe" A +time=1 +tries=1 2>/dev/null | grep -o 'status: [A-Z]*')" = "status: NXDOMAIN" ] &&
		[ "$(dig @127.0.0.1 -p "$port" "x.$probe" A +time=1 +tries=1 2>/dev/null | grep -o 'status: [A-Z]*')" = "status: NXDOMAIN" ] &&
		[ "$(dig @127.0.0.1 -p "$port" unlisted.example A +short +time=1 +tries=1 2>/dev/null)" = "192.0.2.1" ]
}
pid_of() {
	case $1 in switchboard) echo "$SB" ;; dnsdist) echo "$DD" ;; coredns) echo "$CD" ;; esac
}
port_of() {
	case $1 in switchboard) echo "$SB_PORT" ;; dnsdist) echo "$DD_PORT" ;; coredns) echo "$CD_PORT" ;; esac
}
for peer in $peers; do
	name=${peer%%:*} port=${peer##*:}
	t0=$(date +%s)
	until ready "$port"; do
		if (($(date +%s) - t0 > 180)); then
			echo "bench-dns: $name not answering as expected on $port after 180 s" >&2
			tail -20 "$OUT/$name.log" >&2
			exit 1
		fi
		sleep 0.5
	done
	echo "$name ready on 127.0.0.1:$port after $(($(date +%s) - t0)) s, $(awk '/VmRSS/{print $2/1024 " MB"}' "/proc/$(pid_of "$name")/status") resident"
done
echo "domains: $n_domains; queries: $QUERIES ($blocked listed); $(nproc) CPUs; dnsdist $(dnsdist --version 2>/dev/null | head -1 | awk '{print $2}'); $(dnsperf -h 2>&1 | grep -m1 Version)"

cpu() { awk '{print $14 + $15}' "/proc/$1/stat"; }
steal() { awk '/^cpu /{print $9; exit}' /proc/stat; }
hz=$(getconf CLK_TCK)

run_max() { # round peer port
	local r=$1 peer=$2 port=$3 pid=$4
	local c0 u0 s0 out c1 u1 s1
	c0=$(cpu "$pid") u0=$(cpu "$UB") s0=$(steal)
	/usr/bin/time -f '%U %S' -o "$OUT/dnsperf.time" dnsperf -s 127.0.0.1 -p "$port" -d "$OUT/queries.txt" -l "$DURATION" -c 10 -q 100 >"$OUT/max-$peer-$r.txt" 2>&1
	c1=$(cpu "$pid") u1=$(cpu "$UB") s1=$(steal)
	read -r du ds <"$OUT/dnsperf.time"
	awk -v r="$r" -v p="$peer" -v hz="$hz" -v c=$((c1 - c0)) -v u=$((u1 - u0)) -v s=$((s1 - s0)) -v d="$DURATION" -v du="$du" -v ds="$ds" '
		/Queries per second:/ {qps=$4}
		/Average Latency/ {avg=$4*1000}
		/Queries lost:/ {lost=$3}
		/Response codes:/ {for (i = 3; i < NF; i++) if ($i == "SERVFAIL") sf=$(i+1)}
		END {printf "RESULT bench=dns round=%d peer=%s mode=max qps=%.0f avg_ms=%.3f lost=%d servfail=%d cpu_peer=%.2f cpu_upstream=%.2f cpu_client=%.2f steal_pct=%.1f\n",
			r, p, qps, avg, lost, sf, c/hz, u/hz, du+ds, 100*s/hz/d}' "$OUT/max-$peer-$r.txt"
}

run_rate() {
	local r=$1 peer=$2 port=$3
	dnsperf -s 127.0.0.1 -p "$port" -d "$OUT/queries.txt" -l "$DURATION" -c 10 -q 1000 -Q "$RATE" -v >"$OUT/rate-$peer-$r.txt" 2>&1
	grep '^> ' "$OUT/rate-$peer-$r.txt" | awk '{print $NF}' | LC_ALL=C sort -g >"$OUT/lat.txt"
	awk -v r="$r" -v p="$peer" -v q="$RATE" -v lost="$(awk '/Queries lost:/{print $3}' "$OUT/rate-$peer-$r.txt")" \
		-v qps="$(awk '/Queries per second:/{print $4}' "$OUT/rate-$peer-$r.txt")" '
		{v[NR]=$1}
		END {n=NR; if (n==0) {print "RESULT bench=dns round=" r " peer=" p " mode=rate rate=" q " qps=0 p50_ms=0 p99_ms=0 p999_ms=0 lost=" lost; exit}
			printf "RESULT bench=dns round=%d peer=%s mode=rate rate=%d qps=%.0f p50_ms=%.3f p99_ms=%.3f p999_ms=%.3f lost=%d\n",
				r, p, q, qps, v[int(n*0.5)+1]*1000, v[int(n*0.99)+1]*1000, v[int(n*0.999)+1]*1000, lost}' "$OUT/lat.txt"
}

names=$(for p in $peers; do echo "${p%%:*}"; done)
for r in $(seq "$ROUNDS"); do
	# Rotate the order round by round.
	order=$(echo "$names" | awk -v r="$r" '{a[NR-1]=$0} END {for (i = 0; i < NR; i++) print a[(i + r - 1) % NR]}')
	for peer in $order; do
		run_max "$r" "$peer" "$(port_of "$peer")" "$(pid_of "$peer")"
	done
	for peer in $order; do
		run_rate "$r" "$peer" "$(port_of "$peer")"
	done
done
"$OUT/switchboard" -r -s "$OUT/ctl" -x "dns show status" 2>/dev/null | sed 's/^/  /' || true
