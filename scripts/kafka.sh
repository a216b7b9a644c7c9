#!/usr/bin/env bash
# kafka.sh — run a real Apache Kafka 4.x broker (KRaft) on loopback for tests and CI.
#
# The broker runs straight from Maven Central jars (no Docker, no download of a
# distribution tarball). Jars are cached outside the repository in
#   ${SWITCHBOARD_CACHE:-$HOME/.cache/switchboard}/kafka-<version>/libs
#
# Usage: scripts/kafka.sh COMMAND
#
#   up             start one broker+controller in $KAFKA_INSTANCE_DIR (default
#                  /tmp/switchboard-kafka) with four client listeners: PLAINTEXT,
#                  SASL_SSL/SCRAM-SHA-512, OAUTH (SASL_PLAINTEXT/OAUTHBEARER with Kafka's
#                  unsecured-JWT validator: tokens need the scope $KAFKA_OAUTH_SCOPE; for
#                  tests only) and MTLS (SSL with ssl.client.auth=required, trusting the
#                  instance's CA); waits until it answers a metadata request; writes and
#                  prints $KAFKA_INSTANCE_DIR/env.
#                  If that instance's broker already runs, it is reused (exit 0).
#   down           stop the instance's broker (SIGTERM, bounded wait, SIGKILL) and remove
#                  its data. Idempotent.
#   stop-broker    kill -9 the instance's broker, keeping data and ports (simulated outage).
#   start-broker   restart a stopped instance on the same data and ports; waits for it.
#   cluster-up     start a 3-node KRaft cluster (combined broker+controller nodes,
#                  PLAINTEXT) in $KAFKA_CLUSTER_DIR (default /tmp/switchboard-kafka-cluster);
#                  writes and prints $KAFKA_CLUSTER_DIR/env.
#   cluster-down   stop all cluster nodes and remove the cluster's data. Idempotent.
#   node-stop N    kill -9 cluster node N (1..3).
#   node-start N   restart cluster node N and wait until the cluster lists it again.
#   fetch          only resolve the jars into the cache.
#   fetch-tools    resolve org.apache.kafka:kafka-tools of the same version (for
#                  org.apache.kafka.tools.ProducerPerformance) into
#                  $KCACHE/tools-libs (same cache); print that directory.
#   kcat-lib       print a directory holding a librdkafka.so.1 for kcat's SASL/SCRAM use
#                  (built from confluent-kafka-go's bundled librdkafka; empty if not needed).
#   version        print the Kafka version used.
#
# Environment overrides:
#   SWITCHBOARD_KAFKA_VERSION  Kafka version (default 4.1.1)
#   SWITCHBOARD_CACHE          jar cache root (default ~/.cache/switchboard)
#   KAFKA_INSTANCE_DIR         single-broker instance dir (default /tmp/switchboard-kafka)
#   KAFKA_CLUSTER_DIR          cluster dir (default /tmp/switchboard-kafka-cluster)
#   KAFKA_PORT, KAFKA_SASL_PORT, KAFKA_CONTROLLER_PORT, KAFKA_OAUTH_PORT, KAFKA_MTLS_PORT
#                              fixed ports for `up`
#   KAFKA_HEAP                 broker heap for `up` (default 512m; cluster nodes use 384m,
#                              override with KAFKA_CLUSTER_HEAP)
#   KAFKA_READY_TIMEOUT        seconds to wait for readiness (default 90)
#   KAFKA_SASL_USERNAME, KAFKA_SASL_PASSWORD  test user (default switchboard / random)
#   KAFKA_PROXY_ADVERTISE      host:port for `up`: add a PLAINTEXT listener PROXIED on a
#                              free port that advertises host:port (a TCP proxy the caller
#                              runs in front of it, for network-fault tests); its real port
#                              is KAFKA_PROXIED_PORT in the env file. PLAINTEXT stays direct.
#
# Env file keys written by `up`:
#   KAFKA_BOOTSTRAP KAFKA_SASL_BOOTSTRAP KAFKA_SASL_USERNAME KAFKA_SASL_PASSWORD
#   KAFKA_SASL_MECHANISM KAFKA_CA_LOCATION KAFKA_VERSION KAFKA_INSTANCE_DIR
#   KAFKA_KCAT_LIBRARY_PATH (LD_LIBRARY_PATH for kcat over SASL; see kcat_lib below)
#   KAFKA_OAUTH_BOOTSTRAP KAFKA_OAUTH_SCOPE (the OAUTHBEARER listener and the scope its
#     validator requires; the broker re-authenticates its sessions when a token expires)
#   KAFKA_MTLS_BOOTSTRAP (the SSL listener requiring a client certificate)
#   KAFKA_CLIENT_CERT KAFKA_CLIENT_KEY (a client certificate of the instance's CA, EC key)
#   KAFKA_CLIENT_KEY_ENCRYPTED KAFKA_CLIENT_KEY_PASSWORD (the same key, PKCS#8 encrypted)
#   KAFKA_EXPIRED_CLIENT_CERT (signed by the instance's CA for the same key, expired 2020)
#   KAFKA_FOREIGN_CLIENT_CERT KAFKA_FOREIGN_CLIENT_KEY (signed by a CA the broker does not trust)
# and by `cluster-up`:
#   KAFKA_CLUSTER_BOOTSTRAP KAFKA_NODE<N>_BOOTSTRAP KAFKA_NODE<N>_PID_FILE
#   KAFKA_CLUSTER_DIR KAFKA_VERSION
set -euo pipefail

KVER="${SWITCHBOARD_KAFKA_VERSION:-4.1.1}"
# log4j-slf4j-impl must match the log4j2 version Kafka brings (2.24.3 for 4.1.x).
LOG4J_VER="${SWITCHBOARD_LOG4J_VERSION:-2.24.3}"
CACHE_ROOT="${SWITCHBOARD_CACHE:-$HOME/.cache/switchboard}"
KCACHE="$CACHE_ROOT/kafka-$KVER"
LIBS="$KCACHE/libs"
INSTANCE_DIR="$(realpath -m "${KAFKA_INSTANCE_DIR:-/tmp/switchboard-kafka}")"
CLUSTER_DIR="$(realpath -m "${KAFKA_CLUSTER_DIR:-/tmp/switchboard-kafka-cluster}")"
READY_TIMEOUT="${KAFKA_READY_TIMEOUT:-90}"
SASL_MECH="SCRAM-SHA-512"
# The scope the OAUTH listener's unsecured-JWT validator requires in every token.
OAUTH_SCOPE="switchboard"

log() { echo "kafka.sh: $*" >&2; }
die() { echo "kafka.sh: ERROR: $*" >&2; exit 1; }

# ---------------------------------------------------------------- jars

fetch_jars() {
    [[ -f "$KCACHE/.complete" ]] && return 0
    command -v mvn >/dev/null || die "mvn not found (needed once to resolve Kafka $KVER jars)"
    mkdir -p "$KCACHE"
    # Serialize concurrent resolutions (parallel test packages may race here).
    exec 9>"$KCACHE/.lock"
    flock -w 600 9 || die "timed out waiting for the jar cache lock $KCACHE/.lock"
    if [[ -f "$KCACHE/.complete" ]]; then exec 9>&-; return 0; fi
    log "resolving Apache Kafka $KVER jars from Maven Central into $LIBS (first run only)"
    local extra=""
    if [[ "$KVER" == 4.0.* ]]; then
        extra="<dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-api</artifactId><version>$LOG4J_VER</version></dependency>
<dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-core</artifactId><version>$LOG4J_VER</version></dependency>"
    fi
    cat >"$KCACHE/pom.xml" <<EOF
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>switchboard</groupId><artifactId>kafka-runtime</artifactId><version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId><version>$KVER</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-slf4j-impl</artifactId><version>$LOG4J_VER</version></dependency>
    $extra
  </dependencies>
</project>
EOF
    rm -rf "$LIBS.tmp"
    if ! mvn -q -B -f "$KCACHE/pom.xml" dependency:copy-dependencies \
        -DincludeScope=runtime -DoutputDirectory="$LIBS.tmp" >"$KCACHE/mvn.log" 2>&1; then
        tail -n 40 "$KCACHE/mvn.log" >&2
        die "mvn could not resolve org.apache.kafka:kafka_2.13:$KVER (log: $KCACHE/mvn.log)"
    fi
    ls "$LIBS.tmp"/kafka_2.13-"$KVER".jar >/dev/null 2>&1 || die "kafka_2.13-$KVER.jar missing after resolution"
    rm -rf "$LIBS"
    mv "$LIBS.tmp" "$LIBS"
    touch "$KCACHE/.complete"
    exec 9>&-
    log "cached $(ls "$LIBS" | wc -l) jars in $LIBS"
}

# fetch_tools: kafka-tools and its runtime dependencies in their own directory (not
# in the broker's libs, whose classpath stays as it is).
fetch_tools() {
    local tl="$KCACHE/tools-libs"
    [[ -f "$KCACHE/.tools-complete" ]] && return 0
    command -v mvn >/dev/null || die "mvn not found (needed once to resolve kafka-tools $KVER)"
    mkdir -p "$KCACHE/tools"
    exec 9>"$KCACHE/.lock"
    flock -w 600 9 || die "timed out waiting for the jar cache lock $KCACHE/.lock"
    if [[ -f "$KCACHE/.tools-complete" ]]; then exec 9>&-; return 0; fi
    log "resolving org.apache.kafka:kafka-tools:$KVER into $tl (first run only)"
    cat >"$KCACHE/tools/pom.xml" <<EOF
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>switchboard</groupId><artifactId>kafka-tools-runtime</artifactId><version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka-tools</artifactId><version>$KVER</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-slf4j-impl</artifactId><version>$LOG4J_VER</version></dependency>
  </dependencies>
</project>
EOF
    rm -rf "$tl.tmp"
    if ! mvn -q -B -f "$KCACHE/tools/pom.xml" dependency:copy-dependencies \
        -DincludeScope=runtime -DoutputDirectory="$tl.tmp" >"$KCACHE/tools/mvn.log" 2>&1; then
        tail -n 40 "$KCACHE/tools/mvn.log" >&2
        die "mvn could not resolve org.apache.kafka:kafka-tools:$KVER (log: $KCACHE/tools/mvn.log)"
    fi
    ls "$tl.tmp"/kafka-tools-"$KVER".jar >/dev/null 2>&1 || die "kafka-tools-$KVER.jar missing after resolution"
    rm -rf "$tl"
    mv "$tl.tmp" "$tl"
    touch "$KCACHE/.tools-complete"
    exec 9>&-
    log "cached $(ls "$tl" | wc -l) jars in $tl"
}

# ---------------------------------------------------------------- helpers

# free_ports N: print N distinct free TCP ports on 127.0.0.1, one per line.
free_ports() {
    local n="$1"
    if command -v python3 >/dev/null 2>&1 && python3 -c 'pass' 2>/dev/null; then
        python3 - "$n" <<'EOF'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket(); s.bind(("127.0.0.1", 0)); socks.append(s)
for s in socks:
    print(s.getsockname()[1]); s.close()
EOF
        return
    fi
    local got=() p
    while ((${#got[@]} < n)); do
        p=$((20000 + RANDOM % 40000))
        [[ " ${got[*]-} " == *" $p "* ]] && continue
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then got+=("$p"); fi
    done
    printf '%s\n' "${got[@]}"
}

# pid_alive PIDFILE: true when the pid file names a live broker process of this dir.
pid_alive() {
    local pf="$1" pid
    [[ -f "$pf" ]] || return 1
    pid="$(cat "$pf" 2>/dev/null || true)"
    [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    kill -0 "$pid" 2>/dev/null || return 1
    # Guard against pid reuse: the process must be a java kafka.Kafka of this dir.
    # No pipe into grep -q here: under pipefail, tr's SIGPIPE when grep exits early
    # made a live broker look dead.
    local cl
    cl="$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null)" || return 1
    [[ "$cl" == *"kafka.Kafka $(dirname "$pf")/server.properties"* ]] || return 1
}

# pid_running PIDFILE: the process we just started still exists. (Not
# pid_alive: right after the fork its command line is still the shell's,
# not java's, and a loaded machine widens that window.)
pid_running() {
    local pid
    pid="$(cat "$1" 2>/dev/null || true)"
    [[ "$pid" =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null
}

# stop_pid PIDFILE SIGNAL WAIT_SECONDS: stop the process, escalating to SIGKILL.
stop_pid() {
    local pf="$1" sig="$2" wait_s="$3" pid i
    if pid_alive "$pf"; then
        pid="$(cat "$pf")"
        kill "-$sig" "$pid" 2>/dev/null || true
        for ((i = 0; i < wait_s * 10; i++)); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$pid" 2>/dev/null; then
            log "pid $pid did not exit after SIG$sig within ${wait_s}s; sending SIGKILL"
            kill -9 "$pid" 2>/dev/null || true
            for ((i = 0; i < 100; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        fi
    fi
    rm -f "$pf"
}

write_log4j() {
    cat >"$1" <<'EOF'
status = warn
appender.file.type = File
appender.file.name = FILE
appender.file.fileName = ${sys:kafka.logs.dir}/server.log
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRefs = file
rootLogger.appenderRef.file.ref = FILE
logger.kafka.name = kafka
logger.kafka.level = INFO
logger.state.name = state.change.logger
logger.state.level = WARN
logger.request.name = kafka.request.logger
logger.request.level = WARN
EOF
}

# java_classpath: all cached jars.
java_cp() { echo "$LIBS/*"; }

# start_java DIR HEAP: start kafka.Kafka DIR/server.properties detached; pid in DIR/broker.pid.
start_java() {
    local dir="$1" heap="$2"
    mkdir -p "$dir/logs"
    [[ -f "$dir/log4j2.properties" ]] || write_log4j "$dir/log4j2.properties"
    # setsid + closed stdio: the broker must not hold the caller's pipes open.
    setsid java "-Xmx$heap" "-Xms$heap" -server -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
        -XX:InitiatingHeapOccupancyPercent=35 -XX:+ExplicitGCInvokesConcurrent \
        -Djava.awt.headless=true -Dkafka.logs.dir="$dir/logs" \
        -Dlog4j2.configurationFile="$dir/log4j2.properties" \
        -cp "$(java_cp)" kafka.Kafka "$dir/server.properties" \
        </dev/null >>"$dir/logs/stdout.log" 2>&1 &
    echo $! >"$dir/broker.pid"
}

# storage_format DIR CLUSTER_ID [extra args...]
storage_format() {
    local dir="$1" cid="$2"; shift 2
    if ! java -Xmx256m -Dlog4j2.configurationFile="$dir/log4j2.properties" -Dkafka.logs.dir="$dir/logs" \
        -cp "$(java_cp)" kafka.tools.StorageTool format -t "$cid" -c "$dir/server.properties" "$@" \
        >"$dir/logs/format.log" 2>&1; then
        cat "$dir/logs/format.log" >&2
        die "storage format failed in $dir"
    fi
}

random_uuid() {
    java -cp "$(java_cp)" kafka.tools.StorageTool random-uuid 2>/dev/null | tail -n 1
}

have_kcat() { command -v kcat >/dev/null 2>&1; }

# Java fallback for readiness when kcat is missing: a single-file source program.
ready_java_src() {
    local f="$KCACHE/Ready.java"
    [[ -f "$f" ]] || cat >"$f" <<'EOF'
import java.util.*;
import org.apache.kafka.clients.admin.*;
// java -cp libs/* Ready.java BOOTSTRAP MIN_BROKERS [key=value...]: exit 0 when the cluster
// answers a metadata (DescribeCluster) request listing at least MIN_BROKERS brokers.
public class Ready {
  public static void main(String[] a) throws Exception {
    Properties p = new Properties();
    p.put("bootstrap.servers", a[0]);
    p.put("request.timeout.ms", "4000");
    p.put("default.api.timeout.ms", "5000");
    for (int i = 2; i < a.length; i++) { String[] kv = a[i].split("=", 2); p.put(kv[0], kv[1]); }
    try (Admin ad = Admin.create(p)) {
      int n = ad.describeCluster().nodes().get().size();
      System.exit(n >= Integer.parseInt(a[1]) ? 0 : 1);
    } catch (Exception e) { System.exit(1); }
  }
}
EOF
    echo "$f"
}

# metadata_ok BOOTSTRAP MIN_BROKERS [kcat -X props...]: one bounded metadata request.
metadata_ok() {
    local bs="$1" min="$2"; shift 2
    if have_kcat; then
        local out n
        out="$(timeout 10 kcat -L -b "$bs" -m 5 "$@" 2>/dev/null)" || return 1
        n="$(grep -Eo '^ *[0-9]+ brokers:' <<<"$out" | grep -Eo '[0-9]+' | head -n1)"
        [[ -n "$n" && "$n" -ge "$min" ]]
    else
        local props=()
        while (($#)); do
            if [[ "$1" == -X ]]; then props+=("$2"); shift 2; else shift; fi
        done
        timeout 30 java -Xmx128m -cp "$(java_cp)" "$(ready_java_src)" "$bs" "$min" ${props[@]+"${props[@]}"} >/dev/null 2>&1
    fi
}

# wait_ready LABEL PIDFILES LOGFILE BOOTSTRAP MIN_BROKERS [props...]
wait_ready() {
    local label="$1" pidfiles="$2" logf="$3" bs="$4" min="$5"; shift 5
    local deadline=$((SECONDS + READY_TIMEOUT)) pf
    while :; do
        for pf in $pidfiles; do
            if ! pid_running "$pf"; then
                log "$label: broker process ($pf) exited during start-up; tail of $logf:"
                tail -n 60 "$logf" >&2 || true
                tail -n 20 "$(dirname "$pf")/logs/stdout.log" >&2 2>/dev/null || true
                return 1
            fi
        done
        if metadata_ok "$bs" "$min" "$@"; then return 0; fi
        if ((SECONDS >= deadline)); then
            log "$label: no metadata answer from $bs within ${READY_TIMEOUT}s; tail of $logf:"
            tail -n 60 "$logf" >&2 || true
            return 1
        fi
        sleep 0.5 # poll interval, not a readiness assumption
    done
}

kcat_sasl_args() {
    echo "-X security.protocol=SASL_SSL -X sasl.mechanisms=$SASL_MECH -X sasl.username=$1 -X sasl.password=$2 -X ssl.ca.location=$3"
}

# ---------------------------------------------------------------- kcat + SCRAM

# Debian bookworm's kcat links librdkafka 2.0.2, whose SCRAM client-final-message
# repeats the client nonce; Kafka 4.x rejects that (fixed in librdkafka 2.6.1). When the
# system librdkafka is older, build a drop-in librdkafka.so.1 from the static librdkafka
# bundled with confluent-kafka-go (the version switchboard itself uses) and let kcat load
# it via LD_LIBRARY_PATH for SASL. Prints the directory, or nothing when not needed/possible.
version_ge() { [[ "$(printf '%s\n%s\n' "$2" "$1" | sort -V | head -n1)" == "$2" ]]; }

kcat_lib() {
    have_kcat || return 0
    local v
    v="$(kcat -V 2>/dev/null | grep -Eo 'librdkafka [0-9]+\.[0-9]+\.[0-9]+' | awk '{print $2}' | head -n1)"
    [[ -n "$v" ]] && version_ge "$v" 2.6.1 && return 0
    command -v go >/dev/null 2>&1 && command -v gcc >/dev/null 2>&1 || { log "kcat's librdkafka $v cannot do SCRAM with Kafka 4.x and go/gcc are missing to build a newer one"; return 0; }
    local root mod moddir ver out
    root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
    mod=github.com/confluentinc/confluent-kafka-go/v2
    moddir="$(cd "$root" && GOFLAGS=-mod=mod go list -m -f '{{.Dir}}' "$mod" 2>/dev/null || true)"
    if [[ -z "$moddir" || ! -d "$moddir" ]]; then
        (cd "$root" && GOFLAGS=-mod=mod go mod download "$mod" >/dev/null 2>&1) || true
        moddir="$(cd "$root" && GOFLAGS=-mod=mod go list -m -f '{{.Dir}}' "$mod" 2>/dev/null || true)"
    fi
    local a="$moddir/kafka/librdkafka_vendor/librdkafka_glibc_linux_amd64.a"
    [[ "$(uname -m)" == aarch64 ]] && a="$moddir/kafka/librdkafka_vendor/librdkafka_glibc_linux_arm64.a"
    [[ -f "$a" ]] || { log "bundled librdkafka archive not found ($a); kcat SASL will not work"; return 0; }
    ver="${moddir##*@}"
    out="$CACHE_ROOT/librdkafka-ckg-$ver"
    if [[ ! -f "$out/librdkafka.so.1" ]]; then
        mkdir -p "$out"
        gcc -shared -o "$out/librdkafka.so.1.tmp.$$" -Wl,-soname,librdkafka.so.1 \
            -Wl,--whole-archive "$a" -Wl,--no-whole-archive -lm -ldl -lpthread -lrt >"$out/build.log" 2>&1 ||
            { log "building $out/librdkafka.so.1 failed (see $out/build.log)"; return 0; }
        mv "$out/librdkafka.so.1.tmp.$$" "$out/librdkafka.so.1"
        log "built kcat-compatible librdkafka from confluent-kafka-go $ver into $out"
    fi
    echo "$out"
}

# ---------------------------------------------------------------- TLS

# make_certs DIR KEY_PASSWORD: a CA, the broker's certificate for localhost, and the
# client certificates of the MTLS listener's tests (EC keys: fast to generate).
make_certs() {
    local d="$1" keypass="$2"
    mkdir -p "$d"
    command -v openssl >/dev/null || die "openssl not found"
    (
        cd "$d"
        openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj "/CN=switchboard-test-ca" \
            -keyout ca.key -out ca.pem >/dev/null 2>&1
        openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" \
            -keyout server.rsa.key -out server.csr >/dev/null 2>&1
        printf 'subjectAltName=DNS:localhost\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n' >server.ext
        openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 30 \
            -extfile server.ext -out server.pem >/dev/null 2>&1
        openssl pkcs8 -topk8 -nocrypt -in server.rsa.key -out server.key
        # PEM keystore: PKCS#8 private key followed by the certificate chain.
        cat server.key server.pem ca.pem >broker.pem
        # Client certificate of the same CA, and its key encrypted with keypass.
        local ec=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes)
        printf 'basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=clientAuth\n' >client.ext
        openssl req "${ec[@]}" -subj "/CN=switchboard-client" -keyout client.key -out client.csr >/dev/null 2>&1
        openssl x509 -req -in client.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 30 \
            -extfile client.ext -out client.pem >/dev/null 2>&1
        openssl pkcs8 -topk8 -v2 aes-256-cbc -passout "pass:$keypass" -in client.key -out client.enc.key
        # The same client, certified by the same CA for one day in 2020 (openssl ca
        # is the one command of OpenSSL 3.0 that sets dates in the past).
        mkdir -p ca.db
        : >ca.db/index.txt
        echo 1000 >ca.db/serial
        printf '[ca]\ndefault_ca = sb\n[sb]\ndatabase = ca.db/index.txt\nnew_certs_dir = ca.db\nserial = ca.db/serial\ndefault_md = sha256\npolicy = any\n[any]\ncommonName = supplied\n' >ca.cnf
        openssl ca -batch -config ca.cnf -cert ca.pem -keyfile ca.key -in client.csr -out client-expired.pem \
            -startdate 20200101000000Z -enddate 20200102000000Z -notext -extfile client.ext >/dev/null 2>&1
        # A client certificate of a CA the broker does not trust.
        openssl req -x509 "${ec[@]}" -days 30 -subj "/CN=foreign-test-ca" \
            -keyout foreign-ca.key -out foreign-ca.pem >/dev/null 2>&1
        openssl req "${ec[@]}" -subj "/CN=switchboard-client" -keyout foreign-client.key -out foreign-client.csr >/dev/null 2>&1
        openssl x509 -req -in foreign-client.csr -CA foreign-ca.pem -CAkey foreign-ca.key -CAcreateserial -days 30 \
            -extfile client.ext -out foreign-client.pem >/dev/null 2>&1
        chmod 600 ca.key server.rsa.key server.key broker.pem client.key client.enc.key foreign-ca.key foreign-client.key
    ) || die "certificate generation failed in $d"
}

# ---------------------------------------------------------------- single instance

common_props() {
    cat <<EOF
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
num.partitions=3
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=true
delete.topic.enable=true
num.network.threads=2
num.io.threads=4
num.recovery.threads.per.data.dir=1
log.retention.hours=24
log.segment.bytes=67108864
EOF
}

cmd_up() {
    local pf="$INSTANCE_DIR/broker.pid"
    if pid_alive "$pf" && [[ ! -f "$INSTANCE_DIR/env" ]]; then
        log "broker pid $(cat "$pf") in $INSTANCE_DIR has no env file (an earlier up was interrupted); replacing it"
        stop_pid "$pf" KILL 5
    fi
    if pid_alive "$pf"; then
        log "broker already running for instance $INSTANCE_DIR (pid $(cat "$pf")); reusing it"
        echo "$INSTANCE_DIR/env"
        return 0
    fi
    if [[ -f "$pf" ]]; then
        log "removing stale pid file $pf (process $(cat "$pf" 2>/dev/null) is gone)"
        rm -f "$pf"
    fi
    command -v java >/dev/null || die "java not found"
    fetch_jars
    local t0=$SECONDS
    rm -rf "$INSTANCE_DIR/data" "$INSTANCE_DIR/tls" "$INSTANCE_DIR/env"
    mkdir -p "$INSTANCE_DIR/logs" "$INSTANCE_DIR/data"
    : >"$INSTANCE_DIR/logs/server.log"
    local ports p q c o m
    mapfile -t ports < <(free_ports 6)
    p="${KAFKA_PORT:-${ports[0]}}"
    q="${KAFKA_SASL_PORT:-${ports[1]}}"
    c="${KAFKA_CONTROLLER_PORT:-${ports[2]}}"
    o="${KAFKA_OAUTH_PORT:-${ports[4]}}"
    m="${KAFKA_MTLS_PORT:-${ports[5]}}"
    # Optional proxied listener (see KAFKA_PROXY_ADVERTISE).
    local xl="" xa="" xm="" xp=""
    if [[ -n "${KAFKA_PROXY_ADVERTISE:-}" ]]; then
        [[ "$KAFKA_PROXY_ADVERTISE" =~ ^[^:]+:[0-9]+$ ]] || die "KAFKA_PROXY_ADVERTISE must be host:port"
        xp="${ports[3]}"
        xl=",PROXIED://127.0.0.1:$xp" xa=",PROXIED://$KAFKA_PROXY_ADVERTISE" xm=",PROXIED:PLAINTEXT"
    fi
    local user="${KAFKA_SASL_USERNAME:-switchboard}"
    local pass="${KAFKA_SASL_PASSWORD:-sb-$(openssl rand -hex 12)}"
    local keypass
    keypass="kp-$(openssl rand -hex 12)"
    make_certs "$INSTANCE_DIR/tls" "$keypass"
    write_log4j "$INSTANCE_DIR/log4j2.properties"
    cat >"$INSTANCE_DIR/server.properties" <<EOF
# generated by scripts/kafka.sh — single-node KRaft broker+controller for tests
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$c
listeners=PLAINTEXT://127.0.0.1:$p,SASL_SSL://127.0.0.1:$q,OAUTH://127.0.0.1:$o,MTLS://127.0.0.1:$m,CONTROLLER://127.0.0.1:$c$xl
advertised.listeners=PLAINTEXT://127.0.0.1:$p,SASL_SSL://localhost:$q,OAUTH://127.0.0.1:$o,MTLS://localhost:$m,CONTROLLER://127.0.0.1:$c$xa
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,SASL_SSL:SASL_SSL,OAUTH:SASL_PLAINTEXT,MTLS:SSL$xm
log.dirs=$INSTANCE_DIR/data
offsets.topic.replication.factor=1
offsets.topic.num.partitions=10
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=5
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
sasl.enabled.mechanisms=$SASL_MECH
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
ssl.keystore.type=PEM
ssl.keystore.location=$INSTANCE_DIR/tls/broker.pem
# OAUTH: OAUTHBEARER with Kafka's default (unsecured-JWT) login and validator callback
# handlers: any token with alg "none", a "sub" claim and the scope OAUTH_SCOPE is
# accepted (never for production). Sessions last until the token expires, then the
# client must re-authenticate (KIP-368), so a client that does not refresh its
# token fails.
listener.name.oauth.sasl.enabled.mechanisms=OAUTHBEARER
listener.name.oauth.oauthbearer.sasl.jaas.config=org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule required unsecuredLoginStringClaim_sub="switchboard-broker" unsecuredValidatorRequiredScope="$OAUTH_SCOPE";
listener.name.oauth.oauthbearer.connections.max.reauth.ms=3600000
# MTLS: TLS with a client certificate the instance's CA signed.
listener.name.mtls.ssl.client.auth=required
listener.name.mtls.ssl.truststore.type=PEM
listener.name.mtls.ssl.truststore.location=$INSTANCE_DIR/tls/ca.pem
$(common_props)
EOF
    local cid
    cid="$(random_uuid)"
    [[ -n "$cid" ]] || die "could not generate a cluster id"
    storage_format "$INSTANCE_DIR" "$cid" \
        --add-scram "$SASL_MECH=[name=$user,password=$pass]"
    start_java "$INSTANCE_DIR" "${KAFKA_HEAP:-512m}"
    log "started broker pid $(cat "$pf") (PLAINTEXT 127.0.0.1:$p, SASL_SSL localhost:$q, OAUTH 127.0.0.1:$o, MTLS localhost:$m, controller $c); waiting for metadata (<= ${READY_TIMEOUT}s)"
    if ! wait_ready "up" "$pf" "$INSTANCE_DIR/logs/server.log" "127.0.0.1:$p" 1; then
        stop_pid "$pf" KILL 5
        die "broker did not become ready (instance $INSTANCE_DIR)"
    fi
    local klib=""
    klib="$(kcat_lib)"
    if ! have_kcat || [[ -n "$klib" ]] || kcat -V 2>/dev/null | grep -Eq 'librdkafka (2\.([6-9]|[1-9][0-9])|[3-9])'; then
        # shellcheck disable=SC2046
        if ! LD_LIBRARY_PATH="$klib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" wait_ready "up(sasl)" "$pf" \
            "$INSTANCE_DIR/logs/server.log" "localhost:$q" 1 \
            $(kcat_sasl_args "$user" "$pass" "$INSTANCE_DIR/tls/ca.pem"); then
            stop_pid "$pf" KILL 5
            die "SASL_SSL listener did not become ready (instance $INSTANCE_DIR)"
        fi
    else
        log "skipping the SASL_SSL readiness probe: kcat's librdkafka cannot do SCRAM with Kafka 4.x"
    fi
    cat >"$INSTANCE_DIR/env.tmp" <<EOF
KAFKA_BOOTSTRAP=127.0.0.1:$p
KAFKA_SASL_BOOTSTRAP=localhost:$q
KAFKA_SASL_USERNAME=$user
KAFKA_SASL_PASSWORD=$pass
KAFKA_SASL_MECHANISM=$SASL_MECH
KAFKA_CA_LOCATION=$INSTANCE_DIR/tls/ca.pem
KAFKA_VERSION=$KVER
KAFKA_INSTANCE_DIR=$INSTANCE_DIR
KAFKA_KCAT_LIBRARY_PATH=$klib
KAFKA_OAUTH_BOOTSTRAP=127.0.0.1:$o
KAFKA_OAUTH_SCOPE=$OAUTH_SCOPE
KAFKA_MTLS_BOOTSTRAP=localhost:$m
KAFKA_CLIENT_CERT=$INSTANCE_DIR/tls/client.pem
KAFKA_CLIENT_KEY=$INSTANCE_DIR/tls/client.key
KAFKA_CLIENT_KEY_ENCRYPTED=$INSTANCE_DIR/tls/client.enc.key
KAFKA_CLIENT_KEY_PASSWORD=$keypass
KAFKA_EXPIRED_CLIENT_CERT=$INSTANCE_DIR/tls/client-expired.pem
KAFKA_FOREIGN_CLIENT_CERT=$INSTANCE_DIR/tls/foreign-client.pem
KAFKA_FOREIGN_CLIENT_KEY=$INSTANCE_DIR/tls/foreign-client.key
EOF
    if [[ -n "$xp" ]]; then echo "KAFKA_PROXIED_PORT=$xp" >>"$INSTANCE_DIR/env.tmp"; fi
    mv "$INSTANCE_DIR/env.tmp" "$INSTANCE_DIR/env"
    log "Apache Kafka $KVER ready in $((SECONDS - t0))s: PLAINTEXT 127.0.0.1:$p, SASL_SSL localhost:$q, OAUTH 127.0.0.1:$o, MTLS localhost:$m"
    echo "$INSTANCE_DIR/env"
}

cmd_down() {
    local pf="$INSTANCE_DIR/broker.pid"
    if pid_alive "$pf"; then
        log "stopping broker pid $(cat "$pf") of $INSTANCE_DIR"
    fi
    stop_pid "$pf" TERM 30
    # Leave logs/ for post-mortems; everything else of the instance goes.
    rm -rf "$INSTANCE_DIR/data" "$INSTANCE_DIR/tls" "$INSTANCE_DIR/env" \
        "$INSTANCE_DIR/server.properties" "$INSTANCE_DIR/log4j2.properties"
    log "instance $INSTANCE_DIR is down"
}

cmd_stop_broker() {
    local pf="$INSTANCE_DIR/broker.pid"
    pid_alive "$pf" || { log "no running broker in $INSTANCE_DIR"; rm -f "$pf"; return 0; }
    log "killing broker pid $(cat "$pf") (kill -9; data and ports kept)"
    stop_pid "$pf" KILL 5
}

cmd_start_broker() {
    local pf="$INSTANCE_DIR/broker.pid"
    [[ -f "$INSTANCE_DIR/server.properties" && -f "$INSTANCE_DIR/env" ]] ||
        die "no instance in $INSTANCE_DIR to restart; run: $0 up"
    if pid_alive "$pf"; then log "broker already running (pid $(cat "$pf"))"; return 0; fi
    fetch_jars
    local KAFKA_BOOTSTRAP
    KAFKA_BOOTSTRAP="$(sed -n 's/^KAFKA_BOOTSTRAP=//p' "$INSTANCE_DIR/env")"
    local t0=$SECONDS
    start_java "$INSTANCE_DIR" "${KAFKA_HEAP:-512m}"
    log "restarted broker pid $(cat "$pf"); waiting for metadata on $KAFKA_BOOTSTRAP"
    wait_ready "start-broker" "$pf" "$INSTANCE_DIR/logs/server.log" "$KAFKA_BOOTSTRAP" 1 ||
        die "restarted broker did not become ready"
    log "broker ready again in $((SECONDS - t0))s"
}

# ---------------------------------------------------------------- cluster

NODES=3

cluster_bootstrap() { sed -n 's/^KAFKA_CLUSTER_BOOTSTRAP=//p' "$CLUSTER_DIR/env"; }

cmd_cluster_up() {
    local n alive=0
    for ((n = 1; n <= NODES; n++)); do pid_alive "$CLUSTER_DIR/node$n/broker.pid" && alive=$((alive + 1)); done
    if ((alive > 0)) && [[ -f "$CLUSTER_DIR/env" ]]; then
        log "cluster already running in $CLUSTER_DIR ($alive/$NODES nodes alive); reusing it"
        echo "$CLUSTER_DIR/env"
        return 0
    fi
    command -v java >/dev/null || die "java not found"
    fetch_jars
    local t0=$SECONDS
    for ((n = 1; n <= NODES; n++)); do stop_pid "$CLUSTER_DIR/node$n/broker.pid" KILL 5; done
    rm -rf "$CLUSTER_DIR"
    mkdir -p "$CLUSTER_DIR"
    local ports
    mapfile -t ports < <(free_ports $((NODES * 2)))
    local voters="" bs=""
    for ((n = 1; n <= NODES; n++)); do
        voters+="${voters:+,}$n@127.0.0.1:${ports[$((NODES + n - 1))]}"
        bs+="${bs:+,}127.0.0.1:${ports[$((n - 1))]}"
    done
    local cid
    cid="$(random_uuid)"
    [[ -n "$cid" ]] || die "could not generate a cluster id"
    for ((n = 1; n <= NODES; n++)); do
        local d="$CLUSTER_DIR/node$n" p="${ports[$((n - 1))]}" c="${ports[$((NODES + n - 1))]}"
        mkdir -p "$d/data" "$d/logs"
        write_log4j "$d/log4j2.properties"
        cat >"$d/server.properties" <<EOF
# generated by scripts/kafka.sh — node $n of a 3-node KRaft cluster for tests
process.roles=broker,controller
node.id=$n
controller.quorum.voters=$voters
listeners=PLAINTEXT://127.0.0.1:$p,CONTROLLER://127.0.0.1:$c
advertised.listeners=PLAINTEXT://127.0.0.1:$p,CONTROLLER://127.0.0.1:$c
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=$d/data
default.replication.factor=3
offsets.topic.replication.factor=3
offsets.topic.num.partitions=10
transaction.state.log.replication.factor=3
transaction.state.log.min.isr=2
transaction.state.log.num.partitions=5
share.coordinator.state.topic.replication.factor=3
share.coordinator.state.topic.min.isr=2
$(common_props)
EOF
        storage_format "$d" "$cid"
    done
    local pidfiles=""
    for ((n = 1; n <= NODES; n++)); do
        start_java "$CLUSTER_DIR/node$n" "${KAFKA_CLUSTER_HEAP:-384m}"
        pidfiles+=" $CLUSTER_DIR/node$n/broker.pid"
    done
    log "started $NODES nodes ($bs); waiting for all of them in metadata (<= ${READY_TIMEOUT}s)"
    if ! wait_ready "cluster-up" "$pidfiles" "$CLUSTER_DIR/node1/logs/server.log" "$bs" "$NODES"; then
        for ((n = 1; n <= NODES; n++)); do stop_pid "$CLUSTER_DIR/node$n/broker.pid" KILL 5; done
        die "cluster did not become ready ($CLUSTER_DIR)"
    fi
    {
        echo "KAFKA_CLUSTER_BOOTSTRAP=$bs"
        for ((n = 1; n <= NODES; n++)); do
            echo "KAFKA_NODE${n}_BOOTSTRAP=127.0.0.1:${ports[$((n - 1))]}"
            echo "KAFKA_NODE${n}_PID_FILE=$CLUSTER_DIR/node$n/broker.pid"
        done
        echo "KAFKA_CLUSTER_DIR=$CLUSTER_DIR"
        echo "KAFKA_VERSION=$KVER"
    } >"$CLUSTER_DIR/env.tmp"
    mv "$CLUSTER_DIR/env.tmp" "$CLUSTER_DIR/env"
    log "Apache Kafka $KVER 3-node cluster ready in $((SECONDS - t0))s: $bs"
    echo "$CLUSTER_DIR/env"
}

cmd_cluster_down() {
    local n
    for ((n = 1; n <= NODES; n++)); do
        # SIGTERM all first so they shut down in parallel, then wait/escalate.
        pid_alive "$CLUSTER_DIR/node$n/broker.pid" && kill -TERM "$(cat "$CLUSTER_DIR/node$n/broker.pid")" 2>/dev/null || true
    done
    for ((n = 1; n <= NODES; n++)); do stop_pid "$CLUSTER_DIR/node$n/broker.pid" TERM 20; done
    for ((n = 1; n <= NODES; n++)); do
        rm -rf "$CLUSTER_DIR/node$n/data"
    done
    rm -f "$CLUSTER_DIR/env"
    log "cluster $CLUSTER_DIR is down"
}

node_arg() {
    [[ "${1:-}" =~ ^[1-3]$ ]] || die "node number 1..$NODES required"
    [[ -f "$CLUSTER_DIR/env" ]] || die "no cluster in $CLUSTER_DIR; run: $0 cluster-up"
}

cmd_node_stop() {
    node_arg "${1:-}"
    local pf="$CLUSTER_DIR/node$1/broker.pid"
    pid_alive "$pf" || { log "node $1 is not running"; return 0; }
    log "killing node $1 (pid $(cat "$pf"), kill -9)"
    stop_pid "$pf" KILL 5
}

cmd_node_start() {
    node_arg "${1:-}"
    local n="$1" d="$CLUSTER_DIR/node$1"
    if pid_alive "$d/broker.pid"; then log "node $n already running"; return 0; fi
    fetch_jars
    local t0=$SECONDS
    start_java "$d" "${KAFKA_CLUSTER_HEAP:-384m}"
    local nb
    nb="$(sed -n "s/^KAFKA_NODE${n}_BOOTSTRAP=//p" "$CLUSTER_DIR/env")"
    log "restarted node $n (pid $(cat "$d/broker.pid")); waiting until it answers and the cluster lists it"
    wait_ready "node-start $n" "$d/broker.pid" "$d/logs/server.log" "$nb" 1 || die "node $n did not become ready"
    # Then until the cluster metadata lists all live nodes again (the node is unfenced).
    local alive=0 i
    for ((i = 1; i <= NODES; i++)); do pid_alive "$CLUSTER_DIR/node$i/broker.pid" && alive=$((alive + 1)); done
    wait_ready "node-start $n" "$d/broker.pid" "$d/logs/server.log" "$nb" "$alive" ||
        die "node $n did not rejoin the cluster"
    log "node $n ready again in $((SECONDS - t0))s"
}

# ---------------------------------------------------------------- main

case "${1:-}" in
up) cmd_up ;;
down) cmd_down ;;
stop-broker) cmd_stop_broker ;;
start-broker) cmd_start_broker ;;
cluster-up) cmd_cluster_up ;;
cluster-down) cmd_cluster_down ;;
node-stop) cmd_node_stop "${2:-}" ;;
node-start) cmd_node_start "${2:-}" ;;
fetch) fetch_jars; echo "$LIBS" ;;
fetch-tools) fetch_tools; echo "$KCACHE/tools-libs" ;;
kcat-lib) kcat_lib ;;
version) echo "$KVER" ;;
*)
    sed -n '2,/^set -euo/p' "$0" | sed -e '/^set -euo/d' -e 's/^# \{0,1\}//' >&2
    exit 2
    ;;
esac
