#!/usr/bin/env bash
# deploy/images/build.sh [edge|central ...]: the project's container images, built here with podman from a base made
# of Debian's packages (no image registry is reached: none is reachable from the project's machines).
#
#   1. base:   mmdebstrap makes a minimal Debian rootfs (Essential packages + python3, ca-certificates, tzdata and a
#              `cems` user, uid 10001) from the configured Debian mirror; `podman import` turns it into
#              localhost/cems-base:<hash>. Cached: the hash covers the suite, the mirror and the package list.
#   2. wheels: pip (on this machine, from PyPI) builds every wheel the image's extras need, once per pyproject.toml
#              hash, plus the project's own wheel (every run, reproducibly: same sources, same bytes).
#   3. images: one Containerfile per image (edge.Containerfile, central.Containerfile), built with --network=none
#              (every RUN step installs from the staged wheels, nothing else), podman's layer cache on.
#
# Idempotent: a second run with nothing changed reuses the base, the wheels and every layer. Environment:
#   CEMS_IMAGES_CACHE   where rootfs tarballs, wheels and build contexts go (default ~/.cache/cems-images)
#   CEMS_DEBIAN_MIRROR  Debian mirror (default: the first URI of this machine's apt sources, else deb.debian.org)
#   CEMS_DEBIAN_SUITE   default bookworm (its python3 is 3.11, the project's minimum)
#   CEMS_IMAGE_TAG      default: the version in pyproject.toml; images are also tagged :latest
#   CEMS_EDGE_EXTRAS    default "edge" (add ",opcua" for gateways with OPC UA devices: asyncua + cryptography)
#   CEMS_CENTRAL_EXTRAS default "central,console,sm4"
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
cache="${CEMS_IMAGES_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/cems-images}"
suite="${CEMS_DEBIAN_SUITE:-bookworm}"
version="$(sed -n 's/^version = "\(.*\)"/\1/p' "$repo/pyproject.toml" | head -1)"
tag="${CEMS_IMAGE_TAG:-$version}"
edge_extras="${CEMS_EDGE_EXTRAS:-edge}"
central_extras="${CEMS_CENTRAL_EXTRAS:-central,console,sm4}"
images=("$@")
[[ ${#images[@]} -gt 0 ]] || images=(edge central)
for name in "${images[@]}"; do
  [[ "$name" == edge || "$name" == central ]] || { echo "build.sh: unknown image '$name' (edge or central)" >&2; exit 2; }
done
log() { printf '[images] %s\n' "$*" >&2; }

# --- tools (Debian's packages; root installs them, others are told what to install) ---------------------------------
need=()
for tool in podman:podman mmdebstrap:mmdebstrap runc:runc; do  # runc: where crun cannot run (lib.sh)
  command -v "${tool%%:*}" >/dev/null || need+=("${tool##*:}")
done
if [[ ${#need[@]} -gt 0 ]]; then
  if [[ $(id -u) -eq 0 ]]; then
    log "installing ${need[*]} from Debian's packages"
    apt-get install -y -q "${need[@]}" >/dev/null || { apt-get update -q >/dev/null && apt-get install -y -q "${need[@]}" >/dev/null; }
  else
    echo "build.sh: needs ${need[*]}: sudo apt-get install -y ${need[*]}" >&2; exit 1
  fi
fi

# --- 1. the base image -----------------------------------------------------------------------------------------------
mirror="${CEMS_DEBIAN_MIRROR:-}"
if [[ -z "$mirror" ]]; then
  mirror="$(grep -h -o -m1 -E '^URIs: *[^ ]+/debian$|^deb +(\[[^]]*\] +)?[^ ]+/debian ' \
              /etc/apt/sources.list.d/*.sources /etc/apt/sources.list 2>/dev/null | head -1 \
            | sed -E 's/^URIs: *//; s/^deb +(\[[^]]*\] +)?//; s/ +$//')" || true
  mirror="${mirror:-http://deb.debian.org/debian}"
fi
security="${mirror%/debian}/debian-security"
# python3: the runtime; libstdc++6: numpy 2's C++ core (its wheel does not bundle it); ca-certificates: TLS to
# Kafka/InfluxDB; tzdata: plants' local time (zoneinfo)
base_packages="python3,libstdc++6,ca-certificates,tzdata"
# Docs, man pages and locales are dropped at unpack time (dpkg path-exclude); copyright files stay.
# merged-usr hook: /usr merged by mmdebstrap itself, not by the usrmerge package (which pulls in all of perl).
base_opts=(--variant=essential --include="$base_packages" --mode=root --format=tar
  --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr --aptopt='APT::Install-Recommends "false"'
  --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/doc/*'
  --dpkgopt='path-include=/usr/share/doc/*/copyright' --dpkgopt='path-exclude=/usr/share/locale/*'
  --dpkgopt='path-exclude=/usr/share/info/*'
  --customize-hook='echo "cems:x:10001:10001:cems:/var/lib/cems:/usr/sbin/nologin" >> "$1/etc/passwd"'
  --customize-hook='echo "cems:x:10001:" >> "$1/etc/group"'
  --customize-hook='mkdir -p "$1/var/lib/cems" "$1/etc/cems" && chown 10001:10001 "$1/var/lib/cems"'
  --customize-hook='rm -rf "$1/var/cache/apt"/*.bin "$1/var/lib/apt/lists"/* "$1/var/log"/*')
base_hash="$(printf '%s\n' "$suite" "$mirror" "${base_opts[@]}" | sha256sum | cut -c1-12)"
base="localhost/cems-base:$suite-$base_hash"
mkdir -p "$cache"
if podman image exists "$base"; then
  log "base $base (cached)"
else
  rootfs="$cache/rootfs-$suite-$base_hash.tar"
  if [[ ! -s "$rootfs" ]]; then
    log "mmdebstrap $suite from $mirror (+ $base_packages) -> $rootfs"
    mmdebstrap "${base_opts[@]}" "$suite" "$rootfs.part" \
      "deb $mirror $suite main" "deb $mirror $suite-updates main" "deb $security $suite-security main" \
      > "$cache/mmdebstrap.log" 2>&1 || { tail -n 30 "$cache/mmdebstrap.log" >&2; exit 1; }
    mv "$rootfs.part" "$rootfs"
  fi
  log "podman import $rootfs -> $base"
  podman import --quiet --change 'ENV LANG=C.UTF-8' --change 'CMD ["/bin/bash"]' "$rootfs" "$base" >/dev/null
  # Superseded bases and their tarballs (an image still built on one keeps it until rebuilt).
  for old in $(podman images --format '{{.Repository}}:{{.Tag}}' localhost/cems-base | grep -vx "$base"); do
    podman rmi "$old" >/dev/null 2>&1 || true
  done
  find "$cache" -maxdepth 1 -name 'rootfs-*.tar' ! -name "$(basename "$rootfs")" -delete
fi

# shellcheck source=deploy/images/lib.sh
source "$here/lib.sh"
podman_setup "$base"

# --- 2. wheels, 3. images --------------------------------------------------------------------------------------------
py="$(command -v python3.11 || command -v python3)"
"$py" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' \
  || { echo "build.sh: needs Python 3.11 on this machine to build wheels for the image's python3 (3.11)" >&2; exit 1; }
project_hash="$(sha256sum "$repo/pyproject.toml" | cut -c1-12)"
builder="$cache/pip-$project_hash"
if [[ ! -x "$builder/bin/pip" ]]; then
  "$py" -m venv "$builder" && "$builder/bin/pip" install -q --upgrade pip wheel
fi

pip_wheel="$cache/pip-wheel"
if ! ls "$pip_wheel"/pip-*.whl >/dev/null 2>&1; then
  mkdir -p "$pip_wheel" && "$builder/bin/pip" download -q --no-deps -d "$pip_wheel" pip >/dev/null
fi

# The project's wheel from a clean copy of the tracked and new files (no stale build/ of an earlier build), with
# fixed timestamps: the same sources give the same bytes, so podman's layer cache holds while nothing changed.
src="$cache/src" project_wheel_dir="$cache/project"
rm -rf "$src" "$project_wheel_dir" && mkdir -p "$src" "$project_wheel_dir"
if git -C "$repo" rev-parse --git-dir >/dev/null 2>&1; then
  git -C "$repo" ls-files -z --cached --others --exclude-standard \
    | (cd "$repo" && xargs -0 -r sh -c 'for f; do [ -e "$f" ] && printf "%s\0" "$f"; done' _) \
    | tar -C "$repo" --null -T - -cf - | tar -C "$src" -xf -
else
  cp -a "$repo/." "$src/" && rm -rf "$src/build" "$src/.venv"
fi
log "building the project's wheel"
SOURCE_DATE_EPOCH=315532800 "$builder/bin/pip" wheel -q --no-deps -w "$project_wheel_dir" "$src" \
  > "$cache/wheel.log" 2>&1 || { cat "$cache/wheel.log" >&2; exit 1; }
wheel="$(ls "$project_wheel_dir"/cems_pipeline-*.whl)"

build_image() {  # name extras
  local name="$1" extras="$2" key ctx deps
  key="$(printf '%s %s' "$project_hash" "$extras" | sha256sum | cut -c1-12)"
  deps="$cache/wheels-$name-$key"
  if [[ ! -f "$deps/.complete" ]]; then
    log "$name: wheels for [$extras] -> $deps"
    rm -rf "$deps" && mkdir -p "$deps"
    # The dependencies only (the project's own wheel is staged apart, so that a code change rebuilds one layer).
    "$builder/bin/pip" wheel -q -w "$deps" "${wheel}[$extras]" > "$cache/wheel.log" 2>&1 \
      || { cat "$cache/wheel.log" >&2; exit 1; }
    rm -f "$deps"/cems_pipeline-*.whl
    ls "$deps" > "$deps/.complete"
  fi
  ctx="$cache/context-$name"
  rm -rf "$ctx" && mkdir -p "$ctx/project" "$ctx/pip"
  cp -al "$deps" "$ctx/wheels" 2>/dev/null || cp -a "$deps" "$ctx/wheels"
  rm -f "$ctx/wheels/.complete" "$ctx/wheels"/pip-*.whl  # pip runs from its own wheel and stays out of the image
  cp -a "$pip_wheel"/pip-*.whl "$ctx/pip/"
  cp -a "$wheel" "$ctx/project/"
  cp -a "$repo/deploy/demo/reports" "$ctx/demo-reports"
  log "$name: podman build localhost/cems-$name:$tag"
  "${PODMAN[@]}" build "${PODMAN_RUN[@]}" --quiet --layers --network=none --pull=never \
    --build-arg "BASE=$base" --build-arg "EXTRAS=$extras" \
    --label "org.opencontainers.image.version=$version" --label "io.cems.extras=$extras" \
    -f "$here/$name.Containerfile" -t "localhost/cems-$name:$tag" -t "localhost/cems-$name:latest" "$ctx" >/dev/null
  printf '%s\t%s\t%s\n' "localhost/cems-$name:$tag" "$(podman image inspect --format '{{.Size}}' "localhost/cems-$name:$tag")" \
    "$extras"
}

printf 'image\tbytes\textras\n'
printf '%s\t%s\t%s\n' "$base" "$(podman image inspect --format '{{.Size}}' "$base")" "(base)"
for name in "${images[@]}"; do
  if [[ "$name" == edge ]]; then build_image edge "$edge_extras"; else build_image central "$central_extras"; fi
done
