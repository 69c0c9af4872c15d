#!/usr/bin/env bash
# A replicated Apache Kafka cluster on 127.0.0.1: three KRaft nodes, each broker and controller (a quorum of three),
# from the same Maven Central jars as kafka.sh. Topics default to replication factor 3 and min.insync.replicas=2,
# the production settings (docs/operations.md). PLAINTEXT only; it runs beside the single broker of kafka.sh, on its
# own ports and in its own run directory, and never touches that broker.
#
#   deploy/local/kafka-cluster.sh up [--keep-data]   format fresh log dirs (unless --keep-data), start all, wait
#   deploy/local/kafka-cluster.sh down               stop every node (SIGTERM, SIGKILL after 10 s)
#   deploy/local/kafka-cluster.sh kill N             SIGKILL node N (1..3) at once (failure tests)
#   deploy/local/kafka-cluster.sh start N            start node N again on its kept log dir, wait for its port
#   deploy/local/kafka-cluster.sh stop N             controlled shutdown of node N
#   deploy/local/kafka-cluster.sh check              exit 0 when every node accepts connections
#   deploy/local/kafka-cluster.sh status | env       env: CEMS_CLUSTER_BOOTSTRAP and the node ports
#
# Ports: node N's client listener is CEMS_CLUSTER_PORTS' Nth entry (default 29092 29192 29292), its controller
# CEMS_CLUSTER_CONTROLLER_PORTS' Nth (default: the next port up, 29093 29193 29293). State:
# $CEMS_RUN/kafka-cluster/nodeN/{data,server.properties,broker.log,pid} (a test's own cluster: its own CEMS_RUN).
SERVICE=kafka-cluster
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

KAFKA_VERSION="${CEMS_KAFKA_VERSION:-4.1.1}"
HOME_DIR="$CEMS_CACHE/kafka-$KAFKA_VERSION"  # kafka.sh fetch fills it
CLUSTER_DIR="$CEMS_RUN/kafka-cluster"
read -r -a PORTS <<<"${CEMS_CLUSTER_PORTS:-29092 29192 29292}"
NODES=(1 2 3)
read -r -a CONTROLLER_PORTS <<<"${CEMS_CLUSTER_CONTROLLER_PORTS:-}"
[ "${#PORTS[@]}" -eq 3 ] || die "CEMS_CLUSTER_PORTS must name three ports (got '${PORTS[*]}')"
[[ "${#CONTROLLER_PORTS[@]}" =~ ^[03]$ ]] ||
    die "CEMS_CLUSTER_CONTROLLER_PORTS must name three ports or none (got '${CONTROLLER_PORTS[*]}')"

port_of() { echo "${PORTS[$(($1 - 1))]}"; }
controller_port_of() {
    if [ "${#CONTROLLER_PORTS[@]}" -eq 3 ]; then echo "${CONTROLLER_PORTS[$(($1 - 1))]}"; else echo $(($(port_of "$1") + 1)); fi
}
node_dir() { echo "$CLUSTER_DIR/node$1"; }
pidfile() { echo "$(node_dir "$1")/pid"; }
bootstrap() {
    local n out=()
    for n in "${NODES[@]}"; do out+=("127.0.0.1:$(port_of "$n")"); done
    (IFS=,; echo "${out[*]}")
}
voters() {
    local n out=()
    for n in "${NODES[@]}"; do out+=("$n@127.0.0.1:$(controller_port_of "$n")"); done
    (IFS=,; echo "${out[*]}")
}
valid_node() { [[ "${1:-}" =~ ^[123]$ ]] || die "node must be 1, 2 or 3 (got '${1:-}')"; }

# Three JVMs share the machine with the tests (2 cores): a small heap, the serial collector and C1 only keep their
# start-up and background CPU low; a test cluster moves little data.
java_opts() {
    echo "-Xms128m -Xmx512m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Djava.awt.headless=true" \
         "-Djdk.nio.maxCachedBufferSize=262144 -Dlog4j2.configurationFile=$HOME_DIR/log4j2.properties"
}

write_config() {
    local n="$1" dir; dir=$(node_dir "$1")
    mkdir -p "$dir"
    cat > "$dir/server.properties" <<PROPS
process.roles=broker,controller
node.id=$n
controller.quorum.voters=$(voters)
listeners=PLAINTEXT://127.0.0.1:$(port_of "$n"),CONTROLLER://127.0.0.1:$(controller_port_of "$n")
advertised.listeners=PLAINTEXT://127.0.0.1:$(port_of "$n")
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=$dir/data
# the production topic settings (docs/operations.md): every write on at least two of three nodes before acks=all
# returns, no unclean leader election (a stale replica never becomes leader and drops acknowledged batches)
default.replication.factor=3
min.insync.replicas=2
unclean.leader.election.enable=false
num.partitions=3
auto.create.topics.enable=false
offsets.topic.replication.factor=3
offsets.topic.num.partitions=6
transaction.state.log.replication.factor=3
transaction.state.log.min.isr=2
transaction.state.log.num.partitions=1
share.coordinator.state.topic.replication.factor=3
share.coordinator.state.topic.min.isr=2
group.initial.rebalance.delay.ms=0
message.max.bytes=33554432
replica.fetch.max.bytes=33554432
# a SIGKILLed node is fenced (its leaderships move) within 6 s, not the default 9 s
broker.session.timeout.ms=6000
broker.heartbeat.interval.ms=1000
# a restarted node's partitions go back to it (preferred leaders) soon after it caught up
leader.imbalance.check.interval.seconds=10
PROPS
}

format_all() {
    local cluster_id n pids=()
    cluster_id=$(python3 -c 'import uuid, base64; print(base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("="))')
    for n in "${NODES[@]}"; do  # one JVM each, side by side
        rm -rf "$(node_dir "$n")/data"
        # shellcheck disable=SC2046
        java $(java_opts) -cp "$HOME_DIR/libs/*" kafka.tools.StorageTool format -t "$cluster_id" \
            -c "$(node_dir "$n")/server.properties" >"$(node_dir "$n")/format.log" 2>&1 &
        pids+=($!)
    done
    for n in "${NODES[@]}"; do
        wait "${pids[$((n - 1))]}" || { cat "$(node_dir "$n")/format.log" >&2; die "storage format of node $n failed"; }
    done
}

launch() {
    local n="$1" dir; dir=$(node_dir "$1")
    refuse_if_running "$(pidfile "$n")" "$(port_of "$n")" "127.0.0.1:$(port_of "$n")" || return 0
    if port_open "$(controller_port_of "$n")"; then
        die "127.0.0.1:$(controller_port_of "$n") (node $n's controller) is taken by another process"
    fi
    [ -f "$dir/data/meta.properties" ] || die "node $n has no formatted log dir ($dir/data): run 'up' first"
    # shellcheck disable=SC2046
    setsid nohup java $(java_opts) -cp "$HOME_DIR/libs/*" kafka.Kafka "$dir/server.properties" \
        >>"$dir/broker.log" 2>&1 </dev/null &
    echo $! >"$(pidfile "$n")"
}

node_up() { pid_alive "$(pidfile "$1")" && port_open "$(port_of "$1")"; }
all_up() {
    local n
    for n in "${NODES[@]}"; do node_up "$n" || return 1; done
}

up() {
    local keep=0
    [ "${1:-}" = "--keep-data" ] && keep=1
    "$DEPLOY_LOCAL_DIR/kafka.sh" fetch
    local n
    for n in "${NODES[@]}"; do write_config "$n"; done
    if [ "$keep" -eq 0 ] || [ ! -f "$(node_dir 1)/data/meta.properties" ]; then
        if pid_alive "$(pidfile 1)" || pid_alive "$(pidfile 2)" || pid_alive "$(pidfile 3)"; then
            die "the cluster is running: 'down' first (or 'up --keep-data')"
        fi
        step "format three log dirs" format_all
    fi
    local t; t=$(_t0)
    for n in "${NODES[@]}"; do launch "$n"; done
    # A node's client port opens once it has caught up with the metadata quorum and is unfenced: it needs two nodes.
    if ! wait_for "cluster ports" 120 all_up; then
        for n in "${NODES[@]}"; do tail -n 20 "$(node_dir "$n")/broker.log" >&2; done
        die "the cluster did not accept connections within 120 s (logs: $CLUSTER_DIR/node*/broker.log)"
    fi
    log "Kafka $KAFKA_VERSION cluster ready on $(bootstrap) in $(_since "$t") s"
}

start_node() {
    valid_node "$1"
    write_config "$1"
    launch "$1"
    local t; t=$(_t0)
    wait_for "node $1" 90 node_up "$1" ||
        { tail -n 40 "$(node_dir "$1")/broker.log" >&2; die "node $1 did not accept connections within 90 s"; }
    log "node $1 up on 127.0.0.1:$(port_of "$1") in $(_since "$t") s"
}

# SIGTERM to all at once, SIGKILL after 10 s: the last node's controlled shutdown needs a controller quorum that left
# with the others, and waits for it. A test cluster loses nothing that matters by it (the next 'up' formats afresh;
# 'up --keep-data' recovers the logs as after a crash).
down() {
    local n pid pids=()
    for n in "${NODES[@]}"; do
        pid_alive "$(pidfile "$n")" || continue
        pid=$(cat "$(pidfile "$n")")
        kill -TERM "$pid" 2>/dev/null || true
        pids+=("$pid")
    done
    for pid in "${pids[@]}"; do
        wait_for "exit" 10 bash -c "! kill -0 $pid 2>/dev/null" || kill -KILL "$pid" 2>/dev/null || true
    done
    for pid in "${pids[@]}"; do
        wait_for "exit" 30 bash -c "! kill -0 $pid 2>/dev/null" || die "pid $pid survived SIGKILL for 30 s"
    done
    for n in "${NODES[@]}"; do rm -f "$(pidfile "$n")"; done
    log "stopped (${#pids[@]} node(s))"
}

status() {
    local n
    for n in "${NODES[@]}"; do
        if node_up "$n"; then
            log "node $n: running, pid $(cat "$(pidfile "$n")"), 127.0.0.1:$(port_of "$n"), log $(node_dir "$n")/broker.log"
        else
            log "node $n: not running"
        fi
    done
}

case "${1:-}" in
    up) shift; up "$@" ;;
    down) down ;;
    start) start_node "${2:-}" ;;
    stop) valid_node "${2:-}"; stop_pid "$(pidfile "$2")" ;;
    kill) valid_node "${2:-}"; kill_pid "$(pidfile "$2")" ;;
    check) if all_up; then log "up on $(bootstrap)"; else log "DOWN"; exit 1; fi ;;
    status) status ;;
    env)
        echo "CEMS_CLUSTER_BOOTSTRAP=$(bootstrap)"
        echo "CEMS_CLUSTER_PORTS=\"${PORTS[*]}\""
        echo "CEMS_CLUSTER_RUN=$CLUSTER_DIR"
        ;;
    *) sed -n '2,16p' "$0" >&2; exit 2 ;;
esac
