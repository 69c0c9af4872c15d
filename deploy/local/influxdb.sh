#!/usr/bin/env bash
# InfluxDB OSS 2.7 on 127.0.0.1, built from the Go module proxy (and flux's Rust core from crates.io).
#
#   deploy/local/influxdb.sh fetch              build influxd into the cache (cold: ~10 min on 2 cores)
#   deploy/local/influxdb.sh start [--keep-data] start on fresh state (unless --keep-data) and onboard
#                                               org/bucket/operator token (see `env`)
#   deploy/local/influxdb.sh check              exit 0 when /health passes
#   deploy/local/influxdb.sh stop | kill | status | env
#
# Why a wrapper module, the pkg-config wrapper and the rustc wrapper: docs/local-services.md.
SERVICE=influxdb
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

INFLUX_VERSION="${CEMS_INFLUX_VERSION:-2.7.12}"
PKG_CONFIG_WRAPPER_VERSION="0.2.14"   # the version influxdb v2.7.12's go.mod requires
HOME_DIR="$CEMS_CACHE/influxdb-$INFLUX_VERSION"
BIN="$HOME_DIR/influxd"
RUN_DIR="$CEMS_RUN/influxdb"
PIDFILE="$RUN_DIR/influxd.pid"
URL="http://127.0.0.1:$CEMS_INFLUX_PORT"

fetch() {
    [ -x "$BIN" ] && return 0
    need go golang-go
    need cargo cargo
    need pkg-config pkg-config
    need gcc gcc
    need curl curl
    mkdir -p "$HOME_DIR/bin" "$HOME_DIR/module"
    cd "$HOME_DIR/module"
    # `go install influxd@v2.7.x` is refused (its go.mod has a replace directive), so build it as a
    # dependency of a throw-away main module; the replace is a no-op for v2.7.12 anyway.
    [ -f go.mod ] || go mod init local/influxd-build >/dev/null 2>&1
    step "go get influxd v$INFLUX_VERSION (module graph)" quietly "$HOME_DIR/go-get.log" \
        go get "github.com/influxdata/influxdb/v2/cmd/influxd@v$INFLUX_VERSION"
    # InfluxData's pkg-config wrapper builds libflux with cargo when cgo asks for `flux`. Keep it off
    # PATH so it finds the real pkg-config rather than itself.
    step "build pkg-config wrapper" quietly "$HOME_DIR/go-install.log" env GOBIN="$HOME_DIR/bin" \
        go install "github.com/influxdata/pkg-config@v$PKG_CONFIG_WRAPPER_VERSION"
    cp "$DEPLOY_LOCAL_DIR/rustc-cap-lints" "$HOME_DIR/bin/rustc-cap-lints"
    chmod +x "$HOME_DIR/bin/rustc-cap-lints"
    # RUSTUP_TOOLCHAIN: flux pins rustc 1.72 in rust-toolchain.toml; use the installed stable instead.
    # RUSTC_WRAPPER: caps lints on every rustc call (RUSTFLAGS does not reach build-script crates).
    step "build influxd (Go + flux/Rust)" quietly "$HOME_DIR/go-build.log" env CGO_ENABLED=1 \
        PKG_CONFIG="$HOME_DIR/bin/pkg-config" RUSTUP_TOOLCHAIN=stable \
        RUSTC_WRAPPER="$HOME_DIR/bin/rustc-cap-lints" PKG_CONFIG_LOG="$HOME_DIR/pkg-config.log" \
        go build -trimpath -tags sqlite_foreign_keys,sqlite_json \
        -ldflags "-s -w -X main.version=v$INFLUX_VERSION -X main.commit=module-proxy" \
        -o "$BIN.tmp" github.com/influxdata/influxdb/v2/cmd/influxd
    mv "$BIN.tmp" "$BIN"
    "$BIN" version >&2
}

health() { curl -sf "$URL/health" 2>/dev/null | grep -q '"status": *"pass"'; }

onboard() {
    # One-shot initial setup: operator user, org, bucket and the operator token the tests use.
    local body
    body=$(printf '{"username":"cems","password":"cems-local-password","org":"%s","bucket":"%s","token":"%s","retentionPeriodSeconds":0}' \
        "$CEMS_INFLUX_ORG" "$CEMS_INFLUX_BUCKET" "$CEMS_INFLUX_TOKEN")
    if curl -sf "$URL/api/v2/setup" | grep -q '"allowed": *true'; then
        curl -sf -X POST "$URL/api/v2/setup" -H 'Content-Type: application/json' -d "$body" >/dev/null \
            || die "onboarding (POST /api/v2/setup) failed"
        log "onboarded org '$CEMS_INFLUX_ORG', bucket '$CEMS_INFLUX_BUCKET'"
    fi
}

start() {
    local keep=0
    [ "${1:-}" = "--keep-data" ] && keep=1
    fetch
    refuse_if_running "$PIDFILE" "$CEMS_INFLUX_PORT" "$URL" || return 0
    [ "$keep" -eq 1 ] || rm -rf "$RUN_DIR/data"
    mkdir -p "$RUN_DIR/data"
    local t; t=$(_t0)
    setsid nohup "$BIN" \
        --bolt-path="$RUN_DIR/data/influxd.bolt" --engine-path="$RUN_DIR/data/engine" \
        --sqlite-path="$RUN_DIR/data/influxd.sqlite" --http-bind-address="127.0.0.1:$CEMS_INFLUX_PORT" \
        --reporting-disabled --log-level=warn >>"$RUN_DIR/influxd.log" 2>&1 </dev/null &
    echo $! >"$PIDFILE"
    if ! wait_for "health" 60 health; then
        tail -n 40 "$RUN_DIR/influxd.log" >&2
        die "influxd not healthy within 60 s (log: $RUN_DIR/influxd.log)"
    fi
    onboard
    log "InfluxDB $INFLUX_VERSION ready on $URL (pid $(cat "$PIDFILE")) in $(_since "$t") s"
}

check() {
    if pid_alive "$PIDFILE" && health; then log "up on $URL"; else log "DOWN"; return 1; fi
}

status() {
    if pid_alive "$PIDFILE" && health; then
        log "running: pid $(cat "$PIDFILE"), $URL, data $RUN_DIR/data, log $RUN_DIR/influxd.log"
    else
        log "not running (influxd built: $([ -x "$BIN" ] && echo yes || echo no))"
    fi
}

case "${1:-}" in
    fetch) step "fetch InfluxDB $INFLUX_VERSION" fetch ;;
    start) shift; start "$@" ;;
    check) check ;;
    stop) stop_pid "$PIDFILE" ;;
    kill) kill_pid "$PIDFILE" ;;
    status) status ;;
    env)
        echo "CEMS_INFLUX_URL=$URL"
        echo "CEMS_INFLUX_ORG=$CEMS_INFLUX_ORG"
        echo "CEMS_INFLUX_BUCKET=$CEMS_INFLUX_BUCKET"
        echo "CEMS_INFLUX_TOKEN=$CEMS_INFLUX_TOKEN"
        ;;
    *) sed -n '2,10p' "$0" >&2; exit 2 ;;
esac
