#!/usr/bin/env bash
# Apache Kafka, single node in KRaft mode (broker + controller), on 127.0.0.1, from Maven Central jars.
# Client listeners: PLAINTEXT on $CEMS_KAFKA_PORT, SASL_SSL (SCRAM-SHA-256/512, test CA) on $CEMS_KAFKA_SASL_PORT.
#
#   deploy/local/kafka.sh fetch              resolve the broker jars into the cache (Maven)
#   deploy/local/kafka.sh start [--keep-data] format a fresh log dir (unless --keep-data) and start
#   deploy/local/kafka.sh check              exit 0 when the broker accepts connections
#   deploy/local/kafka.sh stop               controlled shutdown (SIGTERM), SIGKILL after 30 s
#   deploy/local/kafka.sh kill               SIGKILL at once (crash tests)
#   deploy/local/kafka.sh status | env      env: connection settings, incl. SASL user, password and CA file
#
# Recipe and caveats: docs/local-services.md (from shared/reference/local-servers.md section A).
SERVICE=kafka
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

KAFKA_VERSION="${CEMS_KAFKA_VERSION:-4.1.1}"
LOG4J_VERSION="2.24.3"            # what Kafka 4.1.1 builds against (gradle/dependencies.gradle)
MAVEN_DEP_PLUGIN="org.apache.maven.plugins:maven-dependency-plugin:3.8.1"
HOME_DIR="$CEMS_CACHE/kafka-$KAFKA_VERSION"
RUN_DIR="$CEMS_RUN/kafka"
PIDFILE="$RUN_DIR/broker.pid"
# SASL_SSL listener. Everything below is for a loopback test broker only: fixed keystore password,
# test CA, test SCRAM user (lib.sh). Inter-broker and controller traffic stay PLAINTEXT on loopback.
TLS_DIR="$RUN_DIR/tls"            # ca.pem (clients' ssl_cafile), broker.pem, broker.p12 (broker keystore)
TLS_LAYOUT=1                      # bump when make_tls changes what it writes: the next start remakes it
KEYSTORE_PASSWORD="cems-local-loopback-keystore"
SCRAM_MECHANISMS="SCRAM-SHA-256 SCRAM-SHA-512"
SCRAM_STAMP="$RUN_DIR/data.scram" # cluster id + SCRAM user (password hashed) the data dir was given

fetch() {
    [ -f "$HOME_DIR/.complete" ] && return 0
    need java openjdk-17-jre-headless
    need mvn maven
    mkdir -p "$HOME_DIR"
    # kafka_2.13 first so Maven's nearest-wins keeps Kafka's own slf4j-api. The logging backend is
    # compileOnly in Kafka's build, so the binding and log4j-core are listed by hand.
    cat > "$HOME_DIR/pom.xml" <<POM
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>local.cems</groupId><artifactId>kafka-broker-runtime</artifactId><version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId><version>$KAFKA_VERSION</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-slf4j-impl</artifactId><version>$LOG4J_VERSION</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-core</artifactId><version>$LOG4J_VERSION</version></dependency>
  </dependencies>
</project>
POM
    rm -rf "$HOME_DIR/libs"
    quietly "$HOME_DIR/maven.log" mvn -B -Dstyle.color=never -f "$HOME_DIR/pom.xml" \
        "$MAVEN_DEP_PLUGIN:copy-dependencies" -DincludeScope=runtime -DoutputDirectory="$HOME_DIR/libs"
    ls "$HOME_DIR/libs"/kafka_2.13-"$KAFKA_VERSION".jar >/dev/null || die "Maven did not deliver kafka_2.13-$KAFKA_VERSION.jar"
    cat > "$HOME_DIR/log4j2.properties" <<'L4J'
status = warn
appender.console.type = Console
appender.console.name = STDOUT
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = warn
rootLogger.appenderRef.stdout.ref = STDOUT
L4J
    touch "$HOME_DIR/.complete"
}

java_opts() {
    # maxCachedBufferSize: without it every network thread keeps a direct buffer as large as the largest request it
    # read (worker snapshots are megabytes), and the broker ran out of direct memory (768 MB) under a benchmark.
    # CEMS_KAFKA_JVM replaces the heap, collector and JIT settings (a test's own short-lived broker: see tests/).
    echo "${CEMS_KAFKA_JVM:--Xms256m -Xmx768m -XX:+UseG1GC -XX:MaxGCPauseMillis=20} -Djava.awt.headless=true" \
         "-Djdk.nio.maxCachedBufferSize=262144 -Dlog4j2.configurationFile=$HOME_DIR/log4j2.properties"
}

write_config() {
    mkdir -p "$RUN_DIR"
    cat > "$RUN_DIR/server.properties" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$CEMS_KAFKA_CONTROLLER_PORT
listeners=PLAINTEXT://127.0.0.1:$CEMS_KAFKA_PORT,SASL_SSL://127.0.0.1:$CEMS_KAFKA_SASL_PORT,CONTROLLER://127.0.0.1:$CEMS_KAFKA_CONTROLLER_PORT
advertised.listeners=PLAINTEXT://127.0.0.1:$CEMS_KAFKA_PORT,SASL_SSL://127.0.0.1:$CEMS_KAFKA_SASL_PORT
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,SASL_SSL:SASL_SSL
listener.name.sasl_ssl.sasl.enabled.mechanisms=${SCRAM_MECHANISMS// /,}
listener.name.sasl_ssl.scram-sha-256.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_ssl.ssl.keystore.type=PKCS12
listener.name.sasl_ssl.ssl.keystore.location=$TLS_DIR/broker.p12
listener.name.sasl_ssl.ssl.keystore.password=$KEYSTORE_PASSWORD
listener.name.sasl_ssl.ssl.client.auth=none
log.dirs=$RUN_DIR/data
num.partitions=1
auto.create.topics.enable=true
offsets.topic.replication.factor=1
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
message.max.bytes=33554432
PROPS
}

start() {
    local keep=0
    [ "${1:-}" = "--keep-data" ] && keep=1
    fetch
    refuse_if_running "$PIDFILE" "$CEMS_KAFKA_PORT" "127.0.0.1:$CEMS_KAFKA_PORT" || return 0
    if port_open "$CEMS_KAFKA_SASL_PORT"; then die "127.0.0.1:$CEMS_KAFKA_SASL_PORT is taken by another process"; fi
    check_sasl_user
    step "TLS material" make_tls
    write_config
    local cp="$HOME_DIR/libs/*"
    # shellcheck disable=SC2046
    if [ "$keep" -eq 0 ] || [ ! -f "$RUN_DIR/data/meta.properties" ]; then
        rm -rf "$RUN_DIR/data"
        step "format storage" format_storage "$cp"
    fi
    local t; t=$(_t0)
    # shellcheck disable=SC2046
    setsid nohup java $(java_opts) -cp "$cp" kafka.Kafka "$RUN_DIR/server.properties" \
        >>"$RUN_DIR/broker.log" 2>&1 </dev/null &
    echo $! >"$PIDFILE"
    # The acceptors open their ports only once the broker is caught up and unfenced (Kafka SocketServer).
    if ! wait_for "broker ports" 90 ready_quiet; then
        tail -n 40 "$RUN_DIR/broker.log" >&2
        die "broker did not accept connections within 90 s (log: $RUN_DIR/broker.log)"
    fi
    log "Kafka $KAFKA_VERSION ready on 127.0.0.1:$CEMS_KAFKA_PORT, SASL_SSL 127.0.0.1:$CEMS_KAFKA_SASL_PORT" \
        "(pid $(cat "$PIDFILE")) in $(_since "$t") s"
    # --keep-data on a data dir that lacks this SCRAM user (formatted by an older kafka.sh, or another password
    # asked for now): add or update it through the running broker (one kafka-configs run per mechanism, ~2 s each).
    if [ "$(cat "$SCRAM_STAMP" 2>/dev/null)" != "$(scram_stamp)" ]; then
        step "add SCRAM user $CEMS_KAFKA_SASL_USERNAME" add_scram_user "$cp"
    fi
}

# The SCRAM user goes into the __cluster_metadata log (at format time, or with kafka-configs afterwards), so it
# survives --keep-data restarts. Restricted characters: the --add-scram/--add-config value syntax splits on , = [ ].
check_sasl_user() {
    [[ "$CEMS_KAFKA_SASL_USERNAME" =~ ^[A-Za-z0-9._-]+$ && "$CEMS_KAFKA_SASL_PASSWORD" =~ ^[A-Za-z0-9._-]+$ ]] ||
        die "CEMS_KAFKA_SASL_USERNAME and CEMS_KAFKA_SASL_PASSWORD may use letters, digits and - _ . only"
}

# The cluster id changes with every format, whichever script formats: a stale stamp never matches new data.
scram_stamp() {
    printf '%s %s %s %s\n' "$(sed -n 's/^cluster\.id=//p' "$RUN_DIR/data/meta.properties" 2>/dev/null)" \
        "${SCRAM_MECHANISMS// /,}" "$CEMS_KAFKA_SASL_USERNAME" \
        "$(printf '%s' "$CEMS_KAFKA_SASL_PASSWORD" | sha256sum | cut -d' ' -f1)"
}

add_scram_user() {
    local m
    # One mechanism per request: the controller refuses two credentials of one user in the same request
    # (DuplicateResourceException "A user credential cannot be altered twice in the same request").
    for m in $SCRAM_MECHANISMS; do
        # shellcheck disable=SC2046
        java $(java_opts) -cp "$1" kafka.admin.ConfigCommand --bootstrap-server "127.0.0.1:$CEMS_KAFKA_PORT" \
            --alter --entity-type users --entity-name "$CEMS_KAFKA_SASL_USERNAME" \
            --add-config "$m=[password=$CEMS_KAFKA_SASL_PASSWORD]" \
            >"$RUN_DIR/scram.log" 2>&1 || { cat "$RUN_DIR/scram.log" >&2; die "adding the $m user failed"; }
    done
    scram_stamp >"$SCRAM_STAMP"
}

# TLS for the SASL_SSL listener, openssl only (about 0.1 s): a self-signed test CA (ca.pem) and a broker
# certificate for IP:127.0.0.1 and DNS:localhost (ECDSA P-256) in a PKCS12 keystore. Made once per $CEMS_RUN and
# kept across starts (fresh or --keep-data) while both certificates stay valid for another day. The CA key is
# deleted once the broker certificate is signed.
tls_current() {
    [ "$(cat "$TLS_DIR/.complete" 2>/dev/null)" = "$TLS_LAYOUT" ] &&
        openssl x509 -noout -checkend 86400 -in "$TLS_DIR/ca.pem" >/dev/null 2>&1 &&
        openssl x509 -noout -checkend 86400 -in "$TLS_DIR/broker.pem" >/dev/null 2>&1
}

make_tls() {
    need openssl openssl
    tls_current && return 0
    local tmp="$TLS_DIR.tmp"
    rm -rf "$tmp"
    mkdir -p "$tmp"
    cat > "$tmp/openssl.cnf" <<'CNF'
[req]
distinguished_name = dn
prompt = no
[dn]
[ca_ext]
basicConstraints = critical, CA:TRUE, pathlen:0
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[broker_ext]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1, DNS:localhost
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
CNF
    quietly "$tmp/openssl.log" tls_commands "$tmp"
    rm -f "$tmp"/{ca.key,broker.key,broker.csr,openssl.cnf,openssl.log}
    chmod 644 "$tmp/ca.pem" "$tmp/broker.pem"
    echo "$TLS_LAYOUT" >"$tmp/.complete"
    rm -rf "$TLS_DIR"
    mv "$tmp" "$TLS_DIR"
}

tls_commands() {
    local ec=(-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes)
    (
        umask 077
        cd "$1"
        set -x
        openssl req -x509 -config openssl.cnf -extensions ca_ext "${ec[@]}" -days 3650 \
            -subj "/CN=cems-local test CA (loopback only)" -keyout ca.key -out ca.pem
        openssl req -new -config openssl.cnf "${ec[@]}" -subj "/CN=localhost" -keyout broker.key -out broker.csr
        openssl x509 -req -in broker.csr -CA ca.pem -CAkey ca.key -set_serial "0x$(openssl rand -hex 16)" \
            -days 825 -extfile openssl.cnf -extensions broker_ext -out broker.pem
        KEYSTORE_PASSWORD="$KEYSTORE_PASSWORD" openssl pkcs12 -export -in broker.pem -inkey broker.key \
            -certfile ca.pem -name broker -passout env:KEYSTORE_PASSWORD -out broker.p12
    )
}

format_storage() {
    local cluster_id
    cluster_id=$(python3 -c 'import uuid; print(uuid.uuid4())')
    local m scram=()
    for m in $SCRAM_MECHANISMS; do
        scram+=(--add-scram "$m=[name=$CEMS_KAFKA_SASL_USERNAME,password=$CEMS_KAFKA_SASL_PASSWORD]")
    done
    # shellcheck disable=SC2046
    java $(java_opts) -cp "$1" kafka.tools.StorageTool format -t "$cluster_id" -c "$RUN_DIR/server.properties" \
        "${scram[@]}" >"$RUN_DIR/format.log" 2>&1 || { cat "$RUN_DIR/format.log" >&2; die "storage format failed"; }
    scram_stamp >"$SCRAM_STAMP"
}

check_quiet() { pid_alive "$PIDFILE" && port_open "$CEMS_KAFKA_PORT"; }
ready_quiet() { check_quiet && port_open "$CEMS_KAFKA_SASL_PORT"; }

check() {
    if ! check_quiet; then log "DOWN"; return 1; fi
    if port_open "$CEMS_KAFKA_SASL_PORT"; then
        log "up on 127.0.0.1:$CEMS_KAFKA_PORT, SASL_SSL 127.0.0.1:$CEMS_KAFKA_SASL_PORT"
    else  # a broker started by an older kafka.sh: PLAINTEXT users are fine, the SASL_SSL tests are not
        log "up on 127.0.0.1:$CEMS_KAFKA_PORT, but no SASL_SSL listener on 127.0.0.1:$CEMS_KAFKA_SASL_PORT (restart it)"
    fi
}

status() {
    if check_quiet; then
        log "running: pid $(cat "$PIDFILE"), 127.0.0.1:$CEMS_KAFKA_PORT, SASL_SSL 127.0.0.1:$CEMS_KAFKA_SASL_PORT" \
            "(CA $TLS_DIR/ca.pem), data $RUN_DIR/data, log $RUN_DIR/broker.log"
    else
        log "not running (jars cached: $([ -f "$HOME_DIR/.complete" ] && echo yes || echo no))"
    fi
}

case "${1:-}" in
    fetch) step "fetch Kafka $KAFKA_VERSION (Maven Central)" fetch ;;
    start) shift; start "$@" ;;
    check) check ;;
    stop) stop_pid "$PIDFILE" ;;
    kill) kill_pid "$PIDFILE" ;;
    status) status ;;
    env)
        echo "CEMS_KAFKA_BOOTSTRAP=127.0.0.1:$CEMS_KAFKA_PORT"
        echo "CEMS_KAFKA_SASL_BOOTSTRAP=127.0.0.1:$CEMS_KAFKA_SASL_PORT"
        echo "CEMS_KAFKA_SASL_CAFILE=$TLS_DIR/ca.pem"
        echo "CEMS_KAFKA_SASL_USERNAME=$CEMS_KAFKA_SASL_USERNAME"
        echo "CEMS_KAFKA_SASL_PASSWORD=$CEMS_KAFKA_SASL_PASSWORD"
        ;;
    *) sed -n '2,12p' "$0" >&2; exit 2 ;;
esac
