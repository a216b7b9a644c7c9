#!/usr/bin/env bash
# bench-produce.sh -- produce throughput and CPU per message: res_kafka's Go
# path (BenchmarkProduce: Producer.Produce, 100-byte messages, acks=1, until
# every message is delivered) against kcat -P (C librdkafka) and franz-go's
# kgo producer (BenchmarkKgoProduce, the Go client a user would pick instead)
# with the same message count, size, acks and linger on the same real
# broker, in one run, rounds interleaved so machine load hits all alike.
#
# Usage: scripts/bench-produce.sh            (broker from $KAFKA_BOOTSTRAP, or
#                                             /tmp/switchboard-kafka/env)
# Environment: N (messages, default 1000000), LINGER_MS (default 5),
#   ROUNDS (default 3), BATCH (default 256: also run res_kafka's
#   ProduceBatch with batches of that many messages, as cdr_kafka's batches;
#   0 to skip), GODEBUG_GO (GODEBUG for the Go side, default none; set it to
#   cgocheck=0 to measure without cgo pointer checks), KAFKA_TOOLS_LIBS (a
#   directory of kafka-tools jars, `bash scripts/kafka.sh fetch-tools`: also run
#   Kafka's own org.apache.kafka.tools.ProducerPerformance each round, same
#   count, size, acks and linger; its CPU includes JVM start-up and JIT).
# Besides the table it prints one machine-readable line per client and round:
#   RESULT bench=produce round=R client=C msgs_per_s=X cpu_ns_per_msg=Y
set -euo pipefail
cd "$(dirname "$0")/.."

N="${N:-1000000}"
SIZE=100
ACKS=1
LINGER_MS="${LINGER_MS:-5}"
ROUNDS="${ROUNDS:-3}"
GODEBUG_GO="${GODEBUG_GO-}"
BATCH="${BATCH:-256}"

if [[ -z "${KAFKA_BOOTSTRAP:-}" ]]; then
    envf="${KAFKA_INSTANCE_DIR:-/tmp/switchboard-kafka}/env"
    [[ -f "$envf" ]] || { echo "no broker: set KAFKA_BOOTSTRAP or run: bash scripts/kafka.sh up" >&2; exit 1; }
    set -a; . "$envf"; set +a
fi
command -v kcat >/dev/null || { echo "kcat is not installed (apt-get install kcat)" >&2; exit 1; }
[[ -x /usr/bin/time ]] || { echo "/usr/bin/time is missing (apt-get install time)" >&2; exit 1; }

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
echo "building the res_kafka test binary..." >&2
GOFLAGS="${GOFLAGS:--mod=mod}" go test -c -o "$work/reskafka.test" ./modules/reskafka/

# N lines of SIZE bytes (plus the newline kcat splits on).
python3 - "$N" "$SIZE" >"$work/payload" <<'PY'
import sys
n, size = int(sys.argv[1]), int(sys.argv[2])
line = (b"abcdefghijklmnopqrstuvwxyz" * (size // 26 + 1))[:size] + b"\n"
sys.stdout.buffer.write(line * n)
PY

echo "load average: $(cut -d' ' -f1-3 /proc/loadavg) on $(nproc) CPUs"
echo "broker $KAFKA_BOOTSTRAP${KAFKA_VERSION:+ (Apache Kafka $KAFKA_VERSION)}; $N messages of $SIZE bytes, acks=$ACKS, linger.ms=$LINGER_MS, $ROUNDS rounds; Go GODEBUG=${GODEBUG_GO:-(none)}"
printf '%-6s %-10s %12s %14s\n' round client msgs/s cpu-ns/msg
result() { echo "RESULT bench=produce round=$1 client=$2 msgs_per_s=$3 cpu_ns_per_msg=$4"; }
go_rates=(); go_cpus=(); kc_rates=(); kc_cpus=(); gb_rates=(); gb_cpus=(); kg_rates=(); kg_cpus=()
gobench() { # $1: benchmark, $2: BENCH_BATCH; prints "rate cpu"
    # res_kafka and kgo: the benchmark measures itself (wall time from the
    # first message to the last delivery report or acknowledgement;
    # getrusage of the process, which includes librdkafka's threads), after
    # a warm-up message.
    local out
    out="$(cd modules/reskafka && GODEBUG="$GODEBUG_GO" BENCH_LINGER_MS="$LINGER_MS" BENCH_BATCH="$2" \
        "$work/reskafka.test" -test.run '^$' -test.bench "^$1\$" \
        -test.benchtime="${N}x" 2>&1 | grep "^$1")" || { echo "$1 failed" >&2; exit 1; }
    awk '{for(i=1;i<=NF;i++){if($i=="msgs/s") r=$(i-1); if($i=="cpu-ns/msg") c=$(i-1)}} END{print r, c}' <<<"$out"
}
for r in $(seq 1 "$ROUNDS"); do
    read -r rate cpu < <(gobench BenchmarkProduce 0)
    go_rates+=("$rate"); go_cpus+=("$cpu")
    printf '%-6s %-10s %12.0f %14.0f\n' "$r" res_kafka "$rate" "$cpu"
    result "$r" res_kafka "$rate" "$cpu"
    if (( BATCH > 0 )); then
        read -r rate cpu < <(gobench BenchmarkProduce "$BATCH")
        gb_rates+=("$rate"); gb_cpus+=("$cpu")
        printf '%-6s %-10s %12.0f %14.0f\n' "$r" "batch$BATCH" "$rate" "$cpu"
        result "$r" "res_kafka_batch$BATCH" "$rate" "$cpu"
    fi

    # kcat: warm up the topic (creation, metadata), then time the whole run;
    # kcat -P exits once every message is delivered.
    topic="bench-kcat-$$-$r"
    echo warm | kcat -P -b "$KAFKA_BOOTSTRAP" -t "$topic" -X acks=$ACKS >/dev/null 2>&1
    /usr/bin/time -o "$work/time" -f '%e %U %S' kcat -P -b "$KAFKA_BOOTSTRAP" -t "$topic" \
        -X acks=$ACKS -X linger.ms="$LINGER_MS" <"$work/payload" >/dev/null 2>"$work/kcat.err" ||
        { echo "kcat failed: $(cat "$work/kcat.err")" >&2; exit 1; }
    read -r wall user sys <"$work/time"
    rate="$(awk -v n="$N" -v w="$wall" 'BEGIN{printf "%.0f", n/w}')"
    cpu="$(awk -v n="$N" -v u="$user" -v s="$sys" 'BEGIN{printf "%.0f", (u+s)*1e9/n}')"
    kc_rates+=("$rate"); kc_cpus+=("$cpu")
    printf '%-6s %-10s %12.0f %14.0f\n' "$r" kcat "$rate" "$cpu"
    result "$r" kcat "$rate" "$cpu"

    # franz-go's kgo producer (BenchmarkKgoProduce): same count, size, acks
    # and linger, one fresh topic.
    read -r rate cpu < <(gobench BenchmarkKgoProduce 0)
    kg_rates+=("$rate"); kg_cpus+=("$cpu")
    printf '%-6s %-10s %12.0f %14.0f\n' "$r" kgo "$rate" "$cpu"
    result "$r" kgo "$rate" "$cpu"

    # Kafka's own Java producer: its records/sec (first send to last
    # acknowledgement, JVM start excluded) from the final summary line.
    if [[ -n "${KAFKA_TOOLS_LIBS:-}" ]]; then
        topic="bench-java-$$-$r"
        echo warm | kcat -P -b "$KAFKA_BOOTSTRAP" -t "$topic" -X acks=$ACKS >/dev/null 2>&1
        /usr/bin/time -o "$work/time" -f '%e %U %S' java -cp "$KAFKA_TOOLS_LIBS/*" \
            org.apache.kafka.tools.ProducerPerformance --topic "$topic" --num-records "$N" \
            --record-size "$SIZE" --throughput -1 --producer-props bootstrap.servers="$KAFKA_BOOTSTRAP" \
            acks=$ACKS linger.ms="$LINGER_MS" >"$work/java.out" 2>&1 ||
            { echo "ProducerPerformance failed: $(tail -n 5 "$work/java.out")" >&2; exit 1; }
        read -r wall user sys <"$work/time"
        rate="$(awk '/records sent/ && /50th/ {for(i=1;i<=NF;i++) if($i ~ /^records\/sec/) r=$(i-1)} END{printf "%.0f", r}' "$work/java.out")"
        cpu="$(awk -v n="$N" -v u="$user" -v s="$sys" 'BEGIN{printf "%.0f", (u+s)*1e9/n}')"
        printf '%-6s %-10s %12.0f %14.0f\n' "$r" java-perf "$rate" "$cpu"
        result "$r" java_producer_perf "$rate" "$cpu"
    fi
done

median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END{print (NR%2)? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
gr="$(median "${go_rates[@]}")"; gc="$(median "${go_cpus[@]}")"
kr="$(median "${kc_rates[@]}")"; kc="$(median "${kc_cpus[@]}")"
gr2="$(median "${kg_rates[@]}")"; gc2="$(median "${kg_cpus[@]}")"
echo
printf 'median  res_kafka %12.0f msgs/s %8.0f cpu-ns/msg\n' "$gr" "$gc"
printf 'median  kcat      %12.0f msgs/s %8.0f cpu-ns/msg\n' "$kr" "$kc"
printf 'median  kgo       %12.0f msgs/s %8.0f cpu-ns/msg\n' "$gr2" "$gc2"
awk -v gr="$gr" -v kr="$kr" -v gc="$gc" -v kc="$kc" \
    'BEGIN{printf "ratio res_kafka/kcat: throughput %.2fx, CPU per message %.2fx\n", gr/kr, gc/kc}'
awk -v gr="$gr" -v kr="$gr2" -v gc="$gc" -v kc="$gc2" \
    'BEGIN{printf "ratio res_kafka/kgo: throughput %.2fx, CPU per message %.2fx\n", gr/kr, gc/kc}'
if (( BATCH > 0 )); then
    br="$(median "${gb_rates[@]}")"; bc="$(median "${gb_cpus[@]}")"
    printf 'median  batch%-4s %12.0f msgs/s %8.0f cpu-ns/msg\n' "$BATCH" "$br" "$bc"
    awk -v gr="$br" -v kr="$kr" -v gc="$bc" -v kc="$kc" \
        'BEGIN{printf "ratio ProduceBatch/kcat: throughput %.2fx, CPU per message %.2fx\n", gr/kr, gc/kc}'
    awk -v gr="$br" -v kr="$gr2" -v gc="$bc" -v kc="$gc2" \
        'BEGIN{printf "ratio ProduceBatch/kgo: throughput %.2fx, CPU per message %.2fx\n", gr/kr, gc/kc}'
fi
echo "(medians; the targets are judged round by round: scripts/bench-report.py)"
