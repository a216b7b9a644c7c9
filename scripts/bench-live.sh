#!/usr/bin/env bash
# bench-live.sh — live capture under tcpreplay: pkt_engine's libpcap source
# (live:), its AF_PACKET source (afpacket:, TPACKET_V3 rings in a fanout
# group, one per worker) and dnscap live, on the same interface, in one run.
#
#   sudo scripts/bench-live.sh                 # needs root: netns, veth
#   RATES="100000 200000 400000" N=300000 scripts/bench-live.sh
#
# A veth pair: sbl0 stays here, sbl1 goes into a network namespace the script
# creates (both deleted at the end). tcpreplay, inside the namespace, sends the
# synthetic capture (cmd/mkcapture, N queries, seed 1) out of sbl1 at each rate
# of RATES (packets/s; "max" = tcpreplay --topspeed), looped so that each run
# lasts about SECONDS_PER_RATE seconds (longer than the capturers' buffers can
# absorb); the capturer listens on sbl0. Per capturer and rate:
# (dnscap: -x '\.ru\.$' -g, as in bench-engine.sh, and -S for its counters);
# loss = 1 - packets the capturer counted / packets tcpreplay sent (kernel
# drops and anything lost before decoding), and its CPU seconds over the
# replay (/proc/PID/stat). The highest rate with loss under 0.1% is each
# capturer's figure. Capturers alternate rate by rate.
#   RESULT bench=live tool=T rate=R pps=ACHIEVED sent=S captured=C loss_pct=L cpu_s=X kernel_drops=K
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-200000}
RATES=${RATES:-"50000 100000 200000 max"}
SECONDS_PER_RATE=${SECONDS_PER_RATE:-5}
OUT=${BENCH_DIR:-/tmp/switchboard-bench-live}
NS=${NS:-sbbench$$}
BL=${BLOCKLISTS:-testdata/blocklists}
[ "$(id -u)" = 0 ] || { echo "bench-live: needs root (network namespace, veth)" >&2; exit 1; }
for tool in tcpreplay dnscap ip go; do
	command -v "$tool" >/dev/null || { echo "bench-live: $tool not found (scripts/deps.sh)" >&2; exit 1; }
done
rm -rf "$OUT"
mkdir -p "$OUT/conf" "$OUT/data"
SB=""
cleanup() {
	[ -n "$SB" ] && kill "$SB" 2>/dev/null && wait "$SB" 2>/dev/null
	ip link del sbl0 2>/dev/null || true
	ip netns del "$NS" 2>/dev/null || true
}
trap cleanup EXIT

go build -o "$OUT/switchboard" ./cmd/switchboard
go build -o "$OUT/mkcapture" ./cmd/mkcapture
"$OUT/mkcapture" -n "$N" -seed 1 -blocklists "$BL" -o "$OUT/q.pcap" >/dev/null
"$OUT/mkcapture" -n 5 -seed 2 -blocklists "$BL" -o "$OUT/warm.pcap" >/dev/null
ip netns add "$NS"
ip link add sbl0 type veth peer name sbl1
ip link set sbl1 netns "$NS"
ip link set sbl0 up
ip netns exec "$NS" ip link set sbl1 up
# Let IPv6 duplicate-address detection and the like finish before measuring.
for _ in $(seq 50); do
	[ "$(cat /sys/class/net/sbl0/operstate)" = up ] && break
	sleep 0.1
done

cpu() { awk '{print $14 + $15}' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK)

# warm_until CMD: replay a few packets until CMD succeeds (the capturer sees
# traffic), at most 100 times.
warm_until() {
	for _ in $(seq 100); do
		ip netns exec "$NS" tcpreplay -q -i sbl1 --pps=1000 "$OUT/warm.pcap" >/dev/null 2>&1
		"$@" && return 0
	done
	echo "bench-live: the capturer never saw the warm-up packets" >&2
	return 1
}

replay() { # rate -> "packets-sent achieved-pps"
	local how loops
	if [ "$1" = max ]; then
		how=--topspeed loops=$(((400000 * SECONDS_PER_RATE + N - 1) / N))
	else
		how=--pps=$1 loops=$((($1 * SECONDS_PER_RATE + N - 1) / N))
	fi
	ip netns exec "$NS" tcpreplay -i sbl1 "$how" --loop="$loops" "$OUT/q.pcap" 2>&1 |
		awk '/Actual:/ {n=$2} /Rated:/ {for (i = 1; i < NF; i++) if ($(i+1) ~ /^pps/) r=$i} END {printf "%d %.0f\n", n, r}'
}

start_engine() { # source
	cat >"$OUT/conf/modules.conf" <<EOF
[modules]
autoload = no
load => res_policy
load => cdr
load => pkt_engine
EOF
	printf '[general]\nsource = %s\nworkers = 2\n[live]\nbuffer_size = 33554432\n' "$1" >"$OUT/conf/pkt_engine.conf"
	"$OUT/switchboard" -f -C "$OUT/conf" -D "$OUT/data" -s "$OUT/ctl" >"$OUT/switchboard.log" 2>&1 &
	SB=$!
	for _ in $(seq 100); do
		"$OUT/switchboard" -rx "packet show status" -s "$OUT/ctl" 2>/dev/null | grep -q running && return 0
		sleep 0.1
	done
	echo "bench-live: pkt_engine with $1 did not start" >&2
	cat "$OUT/switchboard.log" >&2
	exit 1
}

engine_packets() {
	"$OUT/switchboard" -rx "packet show status" -s "$OUT/ctl" | awk '/^Packets:/ {print $2; exit}'
}

engine_saw() { [ "$(engine_packets)" -gt 0 ]; }

engine_drops() {
	"$OUT/switchboard" -rx "packet show status" -s "$OUT/ctl" | awk '/^Dropped:/ {gsub(/[(,]/, " "); print $4; exit}'
}

# wait_stable CMD: the value CMD prints once it stopped changing (bounded).
wait_stable() {
	local prev="" cur
	for _ in $(seq 40); do
		cur=$("$@")
		[ "$cur" = "$prev" ] && { echo "$cur"; return; }
		prev=$cur
		sleep 0.25
	done
	echo "$cur"
}

run_engine() { # tool source rate
	local tool=$1 src=$2 rate=$3 p0 c0 sent p1 c1 drops
	start_engine "$src"
	warm_until engine_saw
	p0=$(wait_stable engine_packets) c0=$(cpu "$SB")
	read -r sent pps < <(replay "$rate")
	p1=$(wait_stable engine_packets) c1=$(cpu "$SB")
	drops=$(engine_drops)
	kill "$SB"
	wait "$SB" 2>/dev/null || true
	SB=""
	result "$tool" "$rate" "$sent" $((p1 - p0)) $((c1 - c0)) "${drops:-0}" "$pps"
}

run_dnscap() { # rate
	local rate=$1 pid c0 c1 sent pps recv drop n0
	# Ready once its packet socket exists (/proc/net/packet gains a line).
	n0=$(wc -l </proc/net/packet)
	# As in bench-engine.sh: every message parsed and matched against one
	# pattern, the few matches printed (dnscap needs an output).
	dnscap -i sbl0 -p -S -x '\.ru\.$' -g 2>"$OUT/dnscap.err" >/dev/null &
	pid=$!
	for _ in $(seq 100); do
		(($(wc -l </proc/net/packet) > n0)) && break
		sleep 0.05
	done
	c0=$(cpu "$pid")
	read -r sent pps < <(replay "$rate")
	c1=$(cpu "$pid")
	kill -INT "$pid"
	wait "$pid" 2>/dev/null || true
	# -S on exit: "sbl0: R recv D drop ..." (libpcap's counters; recv
	# includes what the kernel then dropped).
	read -r recv drop < <(awk '$1 == "sbl0:" {print $2, $4; exit}' "$OUT/dnscap.err")
	result dnscap "$rate" "$sent" $((${recv:-0} - ${drop:-0})) $((c1 - c0)) "${drop:-0}" "$pps"
}

result() { # tool rate sent captured cpu_ticks drops achieved-pps
	awk -v t="$1" -v r="$2" -v s="$3" -v c="$4" -v x="$5" -v hz="$hz" -v d="$6" -v p="$7" 'BEGIN {
		loss = s > 0 ? 100 * (s - c) / s : 100; if (loss < 0) loss = 0
		printf "RESULT bench=live tool=%s rate=%s pps=%d sent=%d captured=%d loss_pct=%.3f cpu_s=%.2f kernel_drops=%s\n", t, r, p, s, c, loss, x / hz, d
	}'
}

printf '[general]\n[groups]\n' >"$OUT/conf/res_policy.conf"
echo "capture: $N queries; $(nproc) CPUs; $(tcpreplay -V 2>&1 | head -1); dnscap $(dnscap -V 2>&1 | awk '{print $NF; exit}')"
for rate in $RATES; do
	run_engine libpcap live:sbl0 "$rate"
	run_engine afpacket afpacket:sbl0 "$rate"
	run_dnscap "$rate"
done
