#!/usr/bin/env bash
# deploy/images/smoke-services.sh: the central image against real services. `cems demo --no-serve --config` runs in
# the image on the host's network: the demo month produced to Kafka, a faust stream worker, the InfluxDB sink, the
# reconciler and archive sync, all from the image (its topics and consumer group are the run's own: cems-replay.*).
# Needs Kafka and InfluxDB up (deploy/local/services.sh up) and the image built (deploy/images/build.sh central).
# Then the HJ 212 receiver from the image, to see the endpoints its Kubernetes probes use answer.
# Opt-in, like smoke.sh. The InfluxDB token reaches the container as an environment variable, never in a file.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
tag="${CEMS_IMAGE_TAG:-$(sed -n 's/^version = "\(.*\)"/\1/p' "$repo/pyproject.toml" | head -1)}"
central="localhost/cems-central:$tag"
eval "$("$repo/deploy/local/services.sh" env | sed 's/^/export /')"
# shellcheck source=deploy/images/lib.sh
source "$here/lib.sh"
podman_setup "$central"

etc="$(mktemp -d)"
trap 'rm -rf "$etc"' EXIT
cat > "$etc/worker.yaml" <<YAML
kafka: {bootstrap_servers: "$CEMS_KAFKA_BOOTSTRAP"}
sites: [/tmp]      # the demo writes its own site files and keys
keys_dir: /tmp
influx: {url: "$CEMS_INFLUX_URL", org: "$CEMS_INFLUX_ORG", bucket: "$CEMS_INFLUX_BUCKET"}
YAML
chmod -R a+rX "$etc"
export CEMS_STREAM__INFLUX__TOKEN="$CEMS_INFLUX_TOKEN"
started=$(date +%s)
out="$("${PODMAN[@]}" run --rm --network=host --read-only --tmpfs /tmp "${PODMAN_RUN[@]}" \
  -e CEMS_STREAM__INFLUX__TOKEN -v "$etc/worker.yaml:/etc/cems/worker.yaml:ro" --entrypoint /bin/bash "$central" -c \
  'cems demo --no-serve --out /tmp/demo --config /etc/cems/worker.yaml $(printf -- "--reports %s " /usr/share/cems/demo/reports/*.csv)' \
  2>&1)" || { printf '%s\n' "$out" | tail -n 40; echo "SMOKE (services) FAILED" >&2; exit 1; }
printf '%s\n' "$out" | tail -n 20
grep -q "archive chain intact" <<<"$out" || { echo "SMOKE (services) FAILED: archive chain" >&2; exit 1; }
echo "demo through Kafka, a worker and InfluxDB in the central image: $(( $(date +%s) - started )) s"

# The HJ 212 receiver from the image, on free loopback ports: its probes' endpoints answer (the TCP port the
# readiness probe opens, /metrics for the liveness probe). It receives no frame: nothing reaches the readings topic.
mn=010000A8900016F000169DC0
mkdir -p "$etc/sites" "$etc/keys" "$etc/passwords"
python3 - "$repo/deploy/examples/gateway-hj212.yaml" "$etc/sites/site.yaml" <<'PY'
import sys, yaml
yaml.safe_dump(yaml.safe_load(open(sys.argv[1]))["site"], open(sys.argv[2], "w"))
PY
head -c 32 /dev/urandom > "$etc/keys/hj212-$mn.key"
echo "smoke-only-password" > "$etc/passwords/$mn.pw"
read -r port metrics < <(python3 -c '
import socket
socks = [socket.socket() for _ in range(2)]
for s in socks: s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in socks))')
cat > "$etc/hj212-server.yaml" <<YAML
listen: 127.0.0.1
port: $port
kafka: {bootstrap_servers: "$CEMS_KAFKA_BOOTSTRAP"}
sites: [/etc/cems/sites]
keys_dir: /etc/cems/keys
passwords_dir: /etc/cems/passwords
state_dir: /tmp/hj212
metrics_port: $metrics
metrics_address: 127.0.0.1
YAML
chmod -R a+rX "$etc"
"${PODMAN[@]}" run --rm --network=host --read-only --tmpfs /tmp "${PODMAN_RUN[@]}" -v "$etc:/etc/cems:ro" \
  -e PORT="$port" -e METRICS="$metrics" --entrypoint /bin/bash "$central" -c '
  cems hj212 serve /etc/cems/hj212-server.yaml & ok=""
  for _ in $(seq 200); do
    python3 -c "
import os, socket, urllib.request
socket.create_connection((\"127.0.0.1\", int(os.environ[\"PORT\"])), 2).close()
body = urllib.request.urlopen(\"http://127.0.0.1:\" + os.environ[\"METRICS\"] + \"/metrics\", timeout=2).read()
assert b\"# HELP\" in body" 2>/dev/null && ok=1 && break
    sleep 0.3
  done
  kill -TERM %1; wait %1; [ -n "$ok" ] && echo "hj212 serve: TCP port open, /metrics answers"' \
  || { echo "SMOKE (services) FAILED: the HJ 212 receiver's probe endpoints" >&2; exit 1; }
echo "SMOKE (services) OK"
