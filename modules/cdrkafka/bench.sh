#!/usr/bin/env bash
# bench.sh — CDR pipeline vs raw res_kafka produce, interleaved rounds on the
# same broker, medians and ratio. Needs a real broker in KAFKA_BOOTSTRAP
# (bash scripts/kafka.sh up; set -a; . /tmp/switchboard-kafka/env; set +a).
#
#   bash modules/cdrkafka/bench.sh [rounds=5] [messages per run=200000]
set -euo pipefail
cd "$(dirname "$0")/../.."
rounds=${1:-5}
n=${2:-200000}
: "${KAFKA_BOOTSTRAP:?set KAFKA_BOOTSTRAP (scripts/kafka.sh up)}"
bin=$(mktemp -d)/cdrkafka.test
trap 'rm -rf "$(dirname "$bin")"' EXIT
GOFLAGS=${GOFLAGS:--mod=mod} go test -c ${GOTESTFLAGS:-} -o "$bin" ./modules/cdrkafka/
pipe=() raw=()
for r in $(seq "$rounds"); do
	for b in CDRPipeline RawProduce; do
		v=$("$bin" -test.run '^$' -test.bench "^Benchmark$b\$" -test.benchtime "${n}x" 2>/dev/null |
			awk '/^Benchmark/ { for (i = 1; i < NF; i++) if ($(i+1) == "msgs/s") print $i }')
		echo "round $r $b ${v:-?} msgs/s"
		if [ "$b" = CDRPipeline ]; then pipe+=("$v"); else raw+=("$v"); fi
	done
done
median() { printf '%s\n' "$@" | sort -g | awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2 }'; }
mp=$(median "${pipe[@]}")
mr=$(median "${raw[@]}")
echo "median CDR pipeline: $mp msgs/s"
echo "median raw produce:  $mr msgs/s"
awk -v p="$mp" -v r="$mr" 'BEGIN { printf "pipeline / raw = %.1f%% (target >= 80%%)\n", 100 * p / r }'
