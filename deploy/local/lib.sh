# Shared helpers for the deploy/local scripts. Source it; do not run it.
# Everything listens on 127.0.0.1 only. Downloads and builds go to $CEMS_CACHE (kept between runs);
# data, logs and pid files go to $CEMS_RUN (a fresh broker/database each `start` unless --keep-data).

set -euo pipefail

CEMS_CACHE="${CEMS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/cems-local}"
CEMS_RUN="${CEMS_RUN:-${TMPDIR:-/tmp}/cems-local-run}"
DEPLOY_LOCAL_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

# Connection settings (the tests read the same variables, with the same defaults).
CEMS_KAFKA_PORT="${CEMS_KAFKA_PORT:-19092}"
CEMS_KAFKA_CONTROLLER_PORT="${CEMS_KAFKA_CONTROLLER_PORT:-19093}"
# Second client listener, SASL_SSL with SCRAM-SHA-256/512 (TLS material made by kafka.sh under $CEMS_RUN/kafka/tls).
# Test-only credentials for a loopback broker; the password may use letters, digits and - _ . only.
CEMS_KAFKA_SASL_PORT="${CEMS_KAFKA_SASL_PORT:-19094}"
CEMS_KAFKA_SASL_USERNAME="${CEMS_KAFKA_SASL_USERNAME:-cems-agent}"
CEMS_KAFKA_SASL_PASSWORD="${CEMS_KAFKA_SASL_PASSWORD:-cems-agent-loopback-test-only}"
CEMS_INFLUX_PORT="${CEMS_INFLUX_PORT:-18086}"
CEMS_INFLUX_ORG="${CEMS_INFLUX_ORG:-cems}"
CEMS_INFLUX_BUCKET="${CEMS_INFLUX_BUCKET:-cems}"
CEMS_INFLUX_TOKEN="${CEMS_INFLUX_TOKEN:-cems-local-operator-token}"  # loopback test server only

mkdir -p "$CEMS_CACHE" "$CEMS_RUN"

_t0() { date +%s.%N; }
_since() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }'; }

log() { printf '[%s] %s\n' "${SERVICE:-local}" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# step NAME CMD...: run a step and print how long it took.
step() {
    local name="$1"; shift
    local t; t=$(_t0)
    "$@"
    log "$name: done in $(_since "$t") s"
}

_apt_updated=0
# need CMD DEBIAN_PACKAGE: install the package if the command is missing (root or sudo).
need() {
    command -v "$1" >/dev/null 2>&1 && return 0
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    command -v apt-get >/dev/null 2>&1 || die "'$1' is missing and there is no apt-get to install '$2'"
    log "installing Debian package $2 (for '$1')"
    if [ "$_apt_updated" -eq 0 ]; then
        $sudo apt-get update -qq >/dev/null
        _apt_updated=1
    fi
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "$2" >/dev/null
    command -v "$1" >/dev/null 2>&1 || die "installed $2 but '$1' is still not on PATH"
}

# need_package DEBIAN_PACKAGE: install a package that has no command to look for (a font, a library).
need_package() {
    dpkg -s "$1" >/dev/null 2>&1 && return 0
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    command -v apt-get >/dev/null 2>&1 || die "Debian package $1 is missing and there is no apt-get to install it"
    log "installing Debian package $1"
    if [ "$_apt_updated" -eq 0 ]; then
        $sudo apt-get update -qq >/dev/null
        _apt_updated=1
    fi
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "$1" >/dev/null
}

# quietly LOGFILE CMD...: run CMD with its output in LOGFILE; show the log's tail only if it fails.
quietly() {
    local logfile="$1"; shift
    "$@" >"$logfile" 2>&1 || { tail -n 60 "$logfile" >&2; die "failed: $* (full log: $logfile)"; }
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# wait_for DESCRIPTION TIMEOUT_S CMD...: poll CMD every 0.2 s.
wait_for() {
    local what="$1" timeout="$2"; shift 2
    local deadline=$(( $(date +%s) + timeout ))
    until "$@"; do
        [ "$(date +%s)" -lt "$deadline" ] || return 1
        sleep 0.2
    done
}

pid_alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

# refuse_if_running PIDFILE PORT WHERE: return 1 (nothing to do) if our process runs; die if a stranger holds PORT.
refuse_if_running() {
    if pid_alive "$1"; then
        log "already running (pid $(cat "$1")) on $3"
        return 1
    fi
    if port_open "$2"; then die "127.0.0.1:$2 is taken by another process"; fi
}

# kill_pid PIDFILE: SIGKILL at once (crash tests); returns once the process is gone and its ports are free.
kill_pid() {
    if pid_alive "$1"; then
        local pid; pid=$(cat "$1")
        kill -KILL "$pid" 2>/dev/null || true
        wait_for "exit" 30 bash -c "! kill -0 $pid 2>/dev/null" || die "pid $pid survived SIGKILL for 30 s"
        log "killed (SIGKILL, pid $pid)"
    fi
    rm -f "$1"
}

# stop_pid PIDFILE: SIGTERM (graceful), SIGKILL after 30 s.
stop_pid() {
    local pidfile="$1"
    if ! pid_alive "$pidfile"; then
        rm -f "$pidfile"
        log "not running"
        return 0
    fi
    local pid; pid=$(cat "$pidfile")
    kill -TERM "$pid" 2>/dev/null || true
    if ! wait_for "exit" 30 bash -c "! kill -0 $pid 2>/dev/null"; then
        log "still running after 30 s; sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$pidfile"
    log "stopped (pid $pid)"
}
