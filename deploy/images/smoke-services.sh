#!/usr/bin/env bash
# deploy/images/smoke-services.sh: the central image against real services. `cems demo --no-serve --config` runs in
# the image on the host's network: the demo month produced to Kafka, a faust stream worker, the InfluxDB sink, the
# reconciler and archive sync, all from the image (its topics and consumer group are the run's own: cems-replay.*).
# Needs Kafka and InfluxDB up (deploy/local/services.sh up) and the image built (deploy/images/build.sh central).
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
echo "SMOKE (services) OK"
