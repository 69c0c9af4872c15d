#!/usr/bin/env bash
# All local services at once: the real Kafka broker and InfluxDB server the tests and benchmarks use.
#
#   deploy/local/services.sh up [--keep-data]   fetch/build (cached), start fresh, check
#   deploy/local/services.sh down               stop both
#   deploy/local/services.sh status | env | fetch
SERVICE=services
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
here="$DEPLOY_LOCAL_DIR"

case "${1:-}" in
    fetch)
        step "Kafka fetch" "$here/kafka.sh" fetch
        step "InfluxDB fetch" "$here/influxdb.sh" fetch
        ;;
    up)
        shift
        t=$(_t0)
        step "Kafka" "$here/kafka.sh" start "$@"
        step "InfluxDB" "$here/influxdb.sh" start "$@"
        log "all services up in $(_since "$t") s"
        "$here/kafka.sh" env
        "$here/influxdb.sh" env
        ;;
    down)
        "$here/kafka.sh" stop
        "$here/influxdb.sh" stop
        ;;
    status)
        "$here/kafka.sh" status
        "$here/influxdb.sh" status
        ;;
    env)
        "$here/kafka.sh" env
        "$here/influxdb.sh" env
        ;;
    *) sed -n '2,7p' "$0" >&2; exit 2 ;;
esac
