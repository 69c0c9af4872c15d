#!/usr/bin/env bash
# Apache Kafka, single node in KRaft mode (broker + controller), on 127.0.0.1, from Maven Central jars.
#
#   deploy/local/kafka.sh fetch              resolve the broker jars into the cache (Maven)
#   deploy/local/kafka.sh start [--keep-data] format a fresh log dir (unless --keep-data) and start
#   deploy/local/kafka.sh check              exit 0 when the broker accepts connections
#   deploy/local/kafka.sh stop               controlled shutdown (SIGTERM), SIGKILL after 30 s
#   deploy/local/kafka.sh kill               SIGKILL at once (crash tests)
#   deploy/local/kafka.sh status | env
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
    echo "-Xms256m -Xmx768m -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -Djava.awt.headless=true" \
         "-Dlog4j2.configurationFile=$HOME_DIR/log4j2.properties"
}

write_config() {
    mkdir -p "$RUN_DIR"
    cat > "$RUN_DIR/server.properties" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$CEMS_KAFKA_CONTROLLER_PORT
listeners=PLAINTEXT://127.0.0.1:$CEMS_KAFKA_PORT,CONTROLLER://127.0.0.1:$CEMS_KAFKA_CONTROLLER_PORT
advertised.listeners=PLAINTEXT://127.0.0.1:$CEMS_KAFKA_PORT
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
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
    # The acceptor opens its port only once the broker is caught up and unfenced (Kafka SocketServer).
    if ! wait_for "broker port" 90 check_quiet; then
        tail -n 40 "$RUN_DIR/broker.log" >&2
        die "broker did not accept connections within 90 s (log: $RUN_DIR/broker.log)"
    fi
    log "Kafka $KAFKA_VERSION ready on 127.0.0.1:$CEMS_KAFKA_PORT (pid $(cat "$PIDFILE")) in $(_since "$t") s"
}

format_storage() {
    local cluster_id
    cluster_id=$(python3 -c 'import uuid; print(uuid.uuid4())')
    # shellcheck disable=SC2046
    java $(java_opts) -cp "$1" kafka.tools.StorageTool format -t "$cluster_id" -c "$RUN_DIR/server.properties" \
        >"$RUN_DIR/format.log" 2>&1 || { cat "$RUN_DIR/format.log" >&2; die "storage format failed"; }
}

check_quiet() { pid_alive "$PIDFILE" && port_open "$CEMS_KAFKA_PORT"; }

check() {
    if check_quiet; then log "up on 127.0.0.1:$CEMS_KAFKA_PORT"; else log "DOWN"; return 1; fi
}

status() {
    if check_quiet; then
        log "running: pid $(cat "$PIDFILE"), 127.0.0.1:$CEMS_KAFKA_PORT, data $RUN_DIR/data, log $RUN_DIR/broker.log"
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
    env) echo "CEMS_KAFKA_BOOTSTRAP=127.0.0.1:$CEMS_KAFKA_PORT" ;;
    *) sed -n '2,12p' "$0" >&2; exit 2 ;;
esac
