#!/usr/bin/env bash
# bench-idle.sh -- CPU used by an idle daemon: the sample configuration on a
# real broker, no traffic (cli.conf without startup commands), measured as
# utime+stime from /proc/PID/stat over SECONDS seconds after it settled,
# beside an idle kcat consumer group of the topics the daemon uses, measured
# the same way over the same seconds, rounds interleaved.
#
# Usage: scripts/bench-idle.sh           (broker from $KAFKA_BOOTSTRAP, or
#                                          /tmp/switchboard-kafka/env)
# Environment: SECONDS_IDLE (60), ROUNDS (3), SWITCHBOARD (binary; built when
#   unset).
# Prints per round and client:
#   RESULT bench=idle round=R client=C cpu_ticks=T seconds=S pct_core=P
set -euo pipefail
cd "$(dirname "$0")/.."
SECS="${SECONDS_IDLE:-60}"
ROUNDS="${ROUNDS:-3}"
if [[ -z "${KAFKA_BOOTSTRAP:-}" ]]; then
    envf="${KAFKA_INSTANCE_DIR:-/tmp/switchboard-kafka}/env"
    [[ -f "$envf" ]] || { echo "no broker: set KAFKA_BOOTSTRAP or run: bash scripts/kafka.sh up" >&2; exit 1; }
    set -a; . "$envf"; set +a
fi
work="$(mktemp -d)"
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
sb="${SWITCHBOARD:-}"
if [[ -z "$sb" ]]; then
    go build -o "$work/switchboard" ./cmd/switchboard
    sb="$work/switchboard"
fi
mkdir -p "$work/conf" "$work/data"
cp samples/*.conf "$work/conf/"
sed -i "s|^brokers = embedded .*|brokers = $KAFKA_BOOTSTRAP|" "$work/conf/kafka.conf"
printf '[startup_commands]\n' >"$work/conf/cli.conf"
# The topics exist as in a deployment (the broker auto-creates them on a
# metadata request that allows it).
for t in policy_updates dp_cdr; do
    for _ in $(seq 1 100); do
        kcat -b "$KAFKA_BOOTSTRAP" -L -t "$t" -X allow.auto.create.topics=true 2>/dev/null | grep -q "topic \"$t\" with" && break
        sleep 0.1
    done
done
hz=$(getconf CLK_TCK)
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
measure() { # $1 pid, $2 label, $3 round
    local t0 t1
    t0=$(ticks "$1")
    sleep "$SECS"
    t1=$(ticks "$1")
    awk -v t="$((t1 - t0))" -v s="$SECS" -v hz="$hz" -v r="$3" -v c="$2" \
        'BEGIN{printf "RESULT bench=idle round=%s client=%s cpu_ticks=%d seconds=%d pct_core=%.3f\n", r, c, t, s, 100*t/hz/s}'
}
echo "idle CPU over ${SECS} s, $ROUNDS rounds; broker $KAFKA_BOOTSTRAP; $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg)"
for r in $(seq 1 "$ROUNDS"); do
    rm -rf "$work/data"/*
    "$sb" -f -C "$work/conf" -D "$work/data" >"$work/daemon.log" 2>&1 &
    dp=$!
    pids+=("$dp")
    # Ready when every module the sample enables runs (remote console).
    for _ in $(seq 1 300); do
        out=$("$sb" -C "$work/conf" -D "$work/data" -rx "module show" 2>/dev/null || true)
        if grep -q '^policy_sync .*Running' <<<"$out" && grep -q '^cdr_kafka .*Running' <<<"$out"; then
            break
        fi
        sleep 0.1
    done
    grep -q '^policy_sync .*Running' <<<"$out" || { echo "daemon not ready:"; echo "$out"; cat "$work/daemon.log"; exit 1; }
    sleep 5 # settle: consumer group joins, first metadata refresh
    measure "$dp" switchboard "$r"
    kill "$dp"; wait "$dp" || true
    kcat -b "$KAFKA_BOOTSTRAP" -q -G "idle-bench-$r-$$" policy_updates dp_cdr >/dev/null 2>&1 &
    kp=$!
    pids+=("$kp")
    sleep 5
    measure "$kp" kcat_consumer "$r"
    kill "$kp"; wait "$kp" || true
done
