#!/usr/bin/env bash
# The whole test suite from a fresh clone, in one command:
#   1. a virtualenv in .venv with the project and its test dependencies (reinstalled when pyproject changes),
#   2. the real Kafka broker and InfluxDB server on 127.0.0.1 (fetched/built once, cached; see services.sh),
#   3. the static checks: ruff, lint-imports and mypy, configured in pyproject.toml (CEMS_SKIP_CHECKS=1 skips them
#      for a quick local loop; CI never sets it),
#   4. pytest in parallel: $CEMS_TEST_WORKERS pytest-xdist workers (default 6 on any machine: most integration time is
#      waiting on brokers, timeouts and subprocesses, not CPU), each test file on one worker (--dist loadfile: a
#      module's fixtures are made once). Extra arguments are passed through and come last, e.g. `-k kafka`,
#      `tests/unit`, or `-n 0` for one process (serially, in file order).
# Services this script started are stopped on exit; services that were already running are left running.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
SERVICE=tests
source deploy/local/lib.sh

t_all=$(_t0)

python_for_venv() {
    local py
    for py in "${PYTHON:-}" python3.11 python3.12 python3.13 python3; do
        [ -n "$py" ] && command -v "$py" >/dev/null 2>&1 || continue
        if "$py" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then echo "$py"; return 0; fi
    done
    die "Python >= 3.11 is required (set PYTHON=/path/to/python3.11)"
}

setup_venv() {
    local stamp=.venv/.cems-install-stamp want
    want=$(cat pyproject.toml | sha256sum | cut -d' ' -f1)
    if [ ! -x .venv/bin/python ]; then
        "$(python_for_venv)" -m venv .venv
    fi
    if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
        quietly .venv/pip-install.log .venv/bin/python -m pip install --upgrade pip
        quietly .venv/pip-install.log .venv/bin/python -m pip install -e ".[all,test,lint]"
        echo "$want" >"$stamp"
    fi
    # ./cems's own stamp (the project's hash, the extras it may install): every extra is in, so the tests' ./cems
    # commands never reinstall the package, least of all several at once under pytest-xdist.
    printf '%s %s\n' "$want" "central console edge opcua parquet sm4" >.venv/.cems-extras
}
step "python environment (.venv)" setup_venv

static_checks() {
    local out
    .venv/bin/ruff check --quiet .
    out=$(.venv/bin/lint-imports --no-cache 2>&1) || { echo "$out" >&2; die "lint-imports: a broken import contract"; }
    out=$(.venv/bin/mypy --no-incremental 2>&1) || { echo "$out" >&2; die "mypy: type errors"; }
}
if [ "${CEMS_SKIP_CHECKS:-0}" != 1 ]; then
    step "static checks (ruff, lint-imports, mypy)" static_checks
fi
# The console's browser tests drive Debian's Chromium (never a browser download); a CJK font draws the Chinese labels.
need chromium chromium
[ -n "$(fc-list :lang=zh 2>/dev/null)" ] || need_package fonts-wqy-microhei

started=0
if deploy/local/kafka.sh check >/dev/null 2>&1 && deploy/local/influxdb.sh check >/dev/null 2>&1; then
    log "using the Kafka and InfluxDB already running"
else
    step "services" deploy/local/services.sh up >/dev/null
    started=1
fi
cleanup() {
    if [ "$started" -eq 1 ]; then deploy/local/services.sh down; fi
    log "total $(_since "$t_all") s"
}
trap cleanup EXIT

eval "$(deploy/local/services.sh env | sed 's/^/export /')"
# Compiled bytecode kept between the suite's processes (and runs), under .venv: each xdist worker and each `cems`
# child process would otherwise compile (and pytest assert-rewrite) the project's modules anew, CPU the 2-core machine
# does not have to spare (collection alone takes 8.6 CPU-s per worker without, 4.3 s with).
unset PYTHONDONTWRITEBYTECODE
export PYTHONPYCACHEPREFIX="$PWD/.venv/pycache"
t=$(_t0)
rc=0
.venv/bin/python -m pytest -n "${CEMS_TEST_WORKERS:-6}" --dist loadfile --no-loadscope-reorder "$@" || rc=$?
log "pytest: exit $rc in $(_since "$t") s"
exit "$rc"
